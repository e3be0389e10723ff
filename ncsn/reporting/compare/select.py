"""Which MLflow runs to compare: the store, and the runs chosen by experiment, dataset or id.

A *pipeline run* is the parent run that ``ncsn pipeline`` (or the Prefect flow) opens, tagged
``ncsn.stage = pipeline``; each stage that ran is a nested run under it. The default choice is,
for each dataset, the latest FINISHED pipeline run whose evaluate stage ran (DVC skips unchanged
stages, so a rerun with nothing to do has no metrics); when no run of a dataset has one, its
latest FINISHED pipeline run.

Stages run by ``dvc exp run`` (or ``dvc repro``) have no pipeline run above them. Those of one
experiment share the tag ``dvc_exp_name``: the experiment's evaluate run stands for it, and its
stages are the runs with that tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

PIPELINE = "pipeline"  # the ncsn.stage tag of a parent run (ncsn.tracking.runs.pipeline_run)
STAGE_TAG = "ncsn.stage"
PARENT_TAG = "mlflow.parentRunId"
EXP_TAG = "dvc_exp_name"  # set on every stage run of a `dvc exp run` experiment
MAKE_RUNS = "make runs with `ncsn pipeline` (or `make run`), e.g. ncsn pipeline -S base.dataset=mnist5k"


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
    from ncsn.tracking.runs import tracking_uri

    return tracking_uri(load_config(params_path))


def open_store(uri: str) -> Store:
    """A read-only view of the store at ``uri``; an embedded store must already exist.

    :raises CompareError: when ``uri`` is a SQLite file that does not exist.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise CompareError(f"no runs found: the MLflow store {path} does not exist; {MAKE_RUNS}")
    from ncsn.tracking.runs import quiet_mlflow

    quiet_mlflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per artifact otherwise
    from mlflow import MlflowClient

    return Store(uri, MlflowClient(tracking_uri=uri, registry_uri=uri))


def _experiments(store: Store, name: str | None) -> list:
    experiments = store.client.search_experiments()
    if name is None:
        return experiments
    chosen = [e for e in experiments if e.name == name]
    if not chosen:
        known = ", ".join(sorted(repr(e.name) for e in experiments)) or "none"
        raise CompareError(f"--experiment {name!r}: no such experiment in {store.uri}; experiments: {known}")
    return chosen


def _search(store: Store, experiment_ids: list[str], query: str) -> list:
    """Every run matching ``query``, newest first (all pages)."""
    runs, token = [], None
    while True:
        page = store.client.search_runs(experiment_ids, query, max_results=1000,
                                        order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def dataset_of(run: Any) -> str:
    """The run's dataset: tag ``dataset``, else parameter ``base.dataset``, else ``unknown``."""
    return run.data.tags.get("dataset") or run.data.params.get("base.dataset") or "unknown"


def select_runs(store: Store, *, experiment: str | None = None, datasets: Sequence[str] = (),
                run_ids: Sequence[str] = ()) -> list:
    """The runs to compare (``mlflow.entities.Run``), oldest first.

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
    experiments = _experiments(store, experiment)
    ids = [e.experiment_id for e in experiments]
    where = f"experiment {experiment!r}" if experiment else f"{len(ids)} experiment(s)"
    parents = _search(store, ids, f"tags.`{STAGE_TAG}` = '{PIPELINE}' and attributes.status = 'FINISHED'") if ids else []
    evaluations = _search(store, ids, f"tags.`{STAGE_TAG}` = 'evaluate' and attributes.status = 'FINISHED'") if ids else []
    experiments_runs = [r for r in evaluations if not r.data.tags.get(PARENT_TAG) and r.data.tags.get(EXP_TAG)]
    parents = sorted([*parents, *experiments_runs], key=lambda r: r.info.start_time or 0, reverse=True)
    if not parents:
        raise CompareError(f"no runs found: no finished pipeline run in {where} of {store.uri}; {MAKE_RUNS}")
    found = sorted({dataset_of(r) for r in parents})
    if datasets:
        parents = [r for r in parents if dataset_of(r) in datasets]
        if not parents:
            raise CompareError(f"no runs found: no finished pipeline run of dataset {', '.join(datasets)} in {where}"
                               f" of {store.uri} (datasets with runs: {', '.join(found)}); {MAKE_RUNS}")
    evaluated = {r.data.tags.get(PARENT_TAG) or r.info.run_id for r in evaluations}
    latest: dict[str, Any] = {}
    for run in parents:  # newest first: keep the first evaluated run of each dataset, else the newest
        key = dataset_of(run)
        if key not in latest or (run.info.run_id in evaluated and latest[key].info.run_id not in evaluated):
            latest[key] = run
    return sorted(latest.values(), key=lambda r: r.info.start_time)


def _by_ids(store: Store, run_ids: Sequence[str]) -> list:
    from mlflow.exceptions import MlflowException

    runs, seen = [], set()
    for run_id in run_ids:
        try:
            run = store.client.get_run(run_id)
            parent = run.data.tags.get(PARENT_TAG)
            if parent:  # a stage run: compare its pipeline run
                run = store.client.get_run(parent)
        except MlflowException:
            raise CompareError(f"--run-ids: unknown run id {run_id!r} in {store.uri}; copy a run id from"
                               " the MLflow UI (`mlflow ui --host 127.0.0.1`) or the CSV of an earlier `ncsn compare`") from None
        if run.info.run_id not in seen:
            seen.add(run.info.run_id)
            runs.append(run)
    return runs


def stage_runs(store: Store, parent: Any) -> dict[str, Any]:
    """``{stage: run}`` of the stages nested under ``parent`` (the last finished one per stage).

    A stage run of a ``dvc exp run`` experiment stands for the stage runs with its ``dvc_exp_name``;
    any other run with no nested runs (a stage started on its own) is its own only stage.
    """
    children = _search(store, [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    if not children and parent.data.tags.get(STAGE_TAG) != PIPELINE:
        name = parent.data.tags.get(EXP_TAG)
        children = [parent]
        if name and not parent.data.tags.get(PARENT_TAG):
            siblings = _search(store, [parent.info.experiment_id], f"tags.`{EXP_TAG}` = '{name}'")
            children = [r for r in siblings if not r.data.tags.get(PARENT_TAG)] or [parent]
    stages: dict[str, Any] = {}
    for run in sorted(children, key=lambda r: r.info.start_time):
        name = run.data.tags.get(STAGE_TAG) or run.info.run_name
        if run.info.status == "FINISHED" or name not in stages:
            stages[name] = run
    return stages
