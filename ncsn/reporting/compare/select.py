"""Which MLflow runs to compare: the store, and the runs chosen by experiment, dataset or id.

A *pipeline run* is the parent run that ``ncsn pipeline`` (or the Prefect flow) opens, tagged
``ncsn.stage = pipeline``; each stage that ran is a nested run under it. The default choice is,
for each dataset, the latest FINISHED pipeline run whose evaluate stage ran (DVC skips unchanged
stages, so a rerun with nothing to do has no metrics); when no run of a dataset has one, its
latest FINISHED pipeline run.

Stages run by ``dvc exp run`` (or ``dvc repro``) have no pipeline run above them. Those of one
experiment share the tag ``dvc_exp_name``: the experiment's evaluate run stands for it, and its
stages are the runs with that tag.

Runs are read with ``mlflow.search_runs(..., output_format="pandas")``: one row per run, with
``run_id``, ``experiment_id``, ``status``, ``start_time``, ``end_time`` and a ``metrics.<key>``,
``params.<key>`` or ``tags.<key>`` column per key (missing: NaN).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

PIPELINE = "pipeline"  # the ncsn.stage tag of a parent run (ncsn.tracking.parent_run.pipeline_run)
STAGE_TAG = "ncsn.stage"
PARENT_TAG = "mlflow.parentRunId"
EXP_TAG = "dvc_exp_name"  # set on every stage run of a `dvc exp run` experiment
MAKE_RUNS = "make runs with `ncsn pipeline` (or `make run`), e.g. ncsn pipeline -S base.dataset=mnist5k"
STAGE, PARENT, EXP, RUN_NAME = (f"tags.{t}" for t in (STAGE_TAG, PARENT_TAG, EXP_TAG, "mlflow.runName"))
# Columns read below, present (empty) even when no run has them.
COLUMNS = (STAGE, PARENT, EXP, RUN_NAME, "tags.dataset", "params.base.dataset")


class CompareError(RuntimeError):
    """A user error of ``ncsn compare``: no runs, an unknown run id or experiment, a bad option."""


@dataclass(frozen=True)
class Store:
    """An MLflow store opened for reading: its URI and a client for tracking and registry."""

    uri: str
    client: Any  # mlflow.MlflowClient


def store_uri(params_path: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the embedded store of ``paths.mlflow`` in ``params_path``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from ncsn.config import load_config
    from ncsn.tracking.store import tracking_uri

    return tracking_uri(load_config(params_path))


def open_store(uri: str) -> Store:
    """A read-only view of the store at ``uri``; an embedded store must already exist.

    :raises CompareError: when ``uri`` is a SQLite file that does not exist.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise CompareError(f"no runs found: the MLflow store {path} does not exist; {MAKE_RUNS}")
    from ncsn.tracking.store import quiet_mlflow

    quiet_mlflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per artifact otherwise
    from mlflow import MlflowClient

    return Store(uri, MlflowClient(tracking_uri=uri, registry_uri=uri))


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` (``mlflow.search_runs`` reads it), then
    restored, together with ``$MLFLOW_TRACKING_URI`` (which setting the URI rewrites)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    env = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def search(store: Store, experiment_ids: Sequence[str], query: str = "", *, deleted: bool = False) -> pd.DataFrame:
    """Every run of ``experiment_ids`` matching ``query``, newest first (deleted ones too if asked)."""
    import mlflow
    from mlflow.entities import ViewType

    frame = pd.DataFrame(columns=["run_id", "experiment_id", "status", "start_time", "end_time"])
    if experiment_ids:
        with _tracking(store.uri):
            frame = mlflow.search_runs(list(experiment_ids), query, order_by=["attributes.start_time DESC"],
                                       run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY,
                                       output_format="pandas")
    return frame.assign(**{c: None for c in COLUMNS if c not in frame})


def first_of(frame: pd.DataFrame, columns: Sequence[str], default: Any = None) -> pd.Series:
    """Per row, the value of the first of ``columns`` that is set (not missing, not empty), else ``default``."""
    out = pd.Series(default, index=frame.index, dtype=object)
    for column in reversed([c for c in columns if c in frame]):
        values = frame[column]
        out = out.where(~(values.notna() & (values.astype(str) != "")), values)
    return out


def dataset_of(frame: pd.DataFrame) -> pd.Series:
    """Each run's dataset: tag ``dataset``, else parameter ``base.dataset``, else ``unknown``."""
    return first_of(frame, ["tags.dataset", "params.base.dataset"], "unknown")


def _experiment_ids(store: Store, name: str | None) -> list[str]:
    experiments = store.client.search_experiments()
    if name is None:
        return [e.experiment_id for e in experiments]
    chosen = [e.experiment_id for e in experiments if e.name == name]
    if not chosen:
        known = ", ".join(sorted(repr(e.name) for e in experiments)) or "none"
        raise CompareError(f"--experiment {name!r}: no such experiment in {store.uri}; experiments: {known}")
    return chosen


def select_runs(store: Store, *, experiment: str | None = None, datasets: Sequence[str] = (),
                run_ids: Sequence[str] = ()) -> pd.DataFrame:
    """The runs to compare, one row each (the frame of :func:`search`), oldest first.

    :param experiment: only runs of this experiment (default: every active experiment).
    :param datasets: only runs of these datasets (default: every dataset).
    :param run_ids: exactly these runs (a stage run stands for its pipeline run); not combined
        with ``experiment`` or ``datasets``.
    :raises CompareError: no runs found (saying what was searched), an unknown id or experiment.
    """
    if run_ids:
        if experiment is not None or datasets:
            raise CompareError("--run-ids names the runs itself; drop --experiment and --dataset")
        return _by_ids(store, run_ids)
    ids = _experiment_ids(store, experiment)
    where = f"experiment {experiment!r}" if experiment else f"{len(ids)} experiment(s)"
    parents = search(store, ids, f"tags.`{STAGE_TAG}` = '{PIPELINE}' and attributes.status = 'FINISHED'")
    evaluations = search(store, ids, f"tags.`{STAGE_TAG}` = 'evaluate' and attributes.status = 'FINISHED'")
    experiment_runs = evaluations[evaluations[PARENT].isna() & evaluations[EXP].notna()]
    parents = pd.concat([f for f in (parents, experiment_runs) if not f.empty] or [parents], ignore_index=True)
    if parents.empty:
        raise CompareError(f"no runs found: no finished pipeline run in {where} of {store.uri}; {MAKE_RUNS}")
    parents = parents.assign(dataset=dataset_of(parents))
    if datasets:
        found = ", ".join(sorted(parents["dataset"].unique()))
        parents = parents[parents["dataset"].isin(datasets)]
        if parents.empty:
            raise CompareError(f"no runs found: no finished pipeline run of dataset {', '.join(datasets)} in {where}"
                               f" of {store.uri} (datasets with runs: {found}); {MAKE_RUNS}")
    evaluated = set(evaluations[PARENT].fillna(evaluations["run_id"]))
    # For each dataset: its newest evaluated run, else its newest run.
    parents = parents.assign(evaluated=parents["run_id"].isin(evaluated))
    latest = parents.sort_values(["evaluated", "start_time"], ascending=False).drop_duplicates("dataset")
    return latest.drop(columns=["dataset", "evaluated"]).sort_values("start_time", ignore_index=True)


def _by_ids(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    from mlflow.exceptions import MlflowException

    chosen: dict[str, str] = {}  # run id -> experiment id, in the order asked
    for run_id in run_ids:
        try:
            run = store.client.get_run(run_id)
            parent = run.data.tags.get(PARENT_TAG)
            if parent:  # a stage run: compare its pipeline run
                run = store.client.get_run(parent)
        except MlflowException:
            raise CompareError(f"--run-ids: unknown run id {run_id!r} in {store.uri}; copy a run id from"
                               " the MLflow UI (`mlflow ui --host 127.0.0.1`) or the CSV of an earlier `ncsn compare`") from None
        chosen.setdefault(run.info.run_id, run.info.experiment_id)
    quoted = ", ".join(f"'{i}'" for i in chosen)
    frame = search(store, sorted(set(chosen.values())), f"attributes.run_id IN ({quoted})", deleted=True)
    return frame.set_index("run_id", drop=False).loc[list(chosen)].reset_index(drop=True)


def stage_runs(store: Store, parent: pd.Series) -> pd.DataFrame:
    """The stage runs of ``parent`` (a row of :func:`select_runs`), one per stage (the last finished
    one), in the order the stages first ran, with their name in column ``stage``.

    A stage run of a ``dvc exp run`` experiment stands for the stage runs with its ``dvc_exp_name``;
    any other run with no nested runs (a stage started on its own) is its own only stage.
    """
    experiment = [parent["experiment_id"]]
    children = search(store, experiment, f"tags.`{PARENT_TAG}` = '{parent['run_id']}'")
    if children.empty and parent[STAGE] != PIPELINE:
        alone = parent.to_frame().T
        children = alone
        name = parent[EXP]
        if pd.notna(name) and name and pd.isna(parent[PARENT]):
            siblings = search(store, experiment, f"tags.`{EXP_TAG}` = '{name}'")
            siblings = siblings[siblings[PARENT].isna()]
            children = siblings if not siblings.empty else alone
    children = children.sort_values("start_time", kind="stable", ignore_index=True)
    children = children.assign(stage=first_of(children, [STAGE, RUN_NAME]))
    order = list(dict.fromkeys(children["stage"]))
    # Per stage: the newest finished run; when none finished, the first one started.
    finished = children["status"] == "FINISHED"
    position = pd.Series(range(len(children)), dtype=float)
    ranked = children.assign(finished_=finished, rank_=position.where(finished, -position))
    chosen = ranked.sort_values(["finished_", "rank_"], kind="stable").drop_duplicates("stage", keep="last")
    return chosen.set_index("stage", drop=False).loc[order].reset_index(drop=True).drop(columns=["finished_", "rank_"])
