"""What the compared runs measured, read back from MLflow: a :class:`Comparison` of frames.

Where each value comes from (the layout that ``ncsn.tracking.runs``, ``ncsn.tracking.parent_run`` and
the stages write):

* dataset, profile, git commit -- tags ``dataset``, ``profile``, ``git_commit`` of the run when
  present; else the parameters ``base.dataset`` and ``profile``, and MLflow's own
  ``mlflow.source.git.commit`` tag; else ``unknown``;
* parameters -- the run's and every stage's (``cfg.flat()``, plus the train stage's ``sigmas.*``);
* σ schedule -- what the train stage logged: its ``sigma_schedule/sigmas.csv`` artifact, else the
  ``sigmas`` parameter (when it holds every level);
* sample grid -- the sample stage's ``samples/grid.png`` artifact;
* IS / FID / KID and the real-vs-real floor -- the evaluate stage's metrics, prefixed by its
  feature extractor (``classifier_``, ``ssl_``, ``raw_``, none for Inception);
* wall time -- end minus start of each stage's run;
* registered version -- the version of ``ncsn-<dataset>`` made from one of the run's runs, and
  whether the alias ``champion`` points at it now.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ncsn.evaluation import FID_KINDS
from ncsn.reporting.compare.select import PIPELINE, RUN_NAME, STAGE, Store, dataset_of, first_of, stage_runs
from ncsn.tracking.champion import CHAMPION

UNKNOWN = "unknown"
# FID metric key -> (metric prefix, extractor shown when the run has no ``extractor`` tag).
# Scores read from the evaluate stage: our name -> metric key without the extractor prefix.
SCORES = {"is": "{p}is", "fid": "{p}fid", "kid_mean": "{p}kid_mean", "kid_std": "{p}kid_std",
          "floor_fid": "floor_{p}fid_train_vs_test", "floor_kid_mean": "floor_{p}kid_mean_train_vs_test",
          "reference_is": "reference_{p}is_test", "n_samples": "n_samples",
          "fid_ci95_low": "{p}fid_ci95_low", "fid_ci95_high": "{p}fid_ci95_high",
          "is_ci95_low": "{p}is_ci95_low", "is_ci95_high": "{p}is_ci95_high",
          "bits_per_dim": "bits_per_dim", "bits_per_dim_se": "bits_per_dim_se", "bpd_images": "bpd_images"}
COMMIT_TAGS = ("tags.git_commit", "tags.mlflow.source.git.commit")  # the first set, over the run and its stages


@dataclass
class Comparison:
    """The compared runs, oldest first; every frame is indexed by the run id.

    ``runs`` has one column per value of a run: ``run_name``, ``experiment``, ``started``,
    ``dataset``, ``profile``, ``git_commit``, ``label``, ``extractor``, the :data:`SCORES`,
    ``fid_over_floor``, ``total_seconds``, ``registered_model``, ``model_version``, ``champion``
    and ``champion_version``. ``wall`` has the seconds of each stage (columns in the order the
    stages run), ``params`` every parameter of each run. Missing values are NaN or None.
    """

    runs: pd.DataFrame
    wall: pd.DataFrame
    params: pd.DataFrame
    sigmas: dict[str, list[float]] = field(default_factory=dict)
    sigmas_source: dict[str, str] = field(default_factory=dict)
    grids: dict[str, bytes] = field(default_factory=dict)


def _seconds(frame: pd.DataFrame) -> pd.Series:
    return (pd.to_datetime(frame["end_time"], utc=True) - pd.to_datetime(frame["start_time"], utc=True)).dt.total_seconds()


def _download(store: Store, run_id: str, path: str) -> bytes | None:
    """The bytes of one artifact of a run, or None when it is not there."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = store.client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return None
        file = Path(local)
        return file.read_bytes() if file.is_file() else None


def _sigmas(store: Store, train_run: str | None, params: pd.Series) -> tuple[list[float] | None, str]:
    """The σ schedule a run logged, and where it was read."""
    if train_run is not None:
        data = _download(store, train_run, "sigma_schedule/sigmas.csv")
        if data:
            try:
                return [float(s) for s in pd.read_csv(io.BytesIO(data))["sigma"]], "the train stage's sigmas.csv"
            except (KeyError, ValueError, pd.errors.ParserError):
                pass
    text = params.get("sigmas")
    if isinstance(text, str) and "truncated" not in text:  # a long schedule's parameter holds its ends only
        try:
            return [float(s) for s in text.split(",")], "the logged sigmas parameter"
        except ValueError:
            pass
    return None, ""


def _scores(evaluate: pd.Series | None) -> dict[str, object]:
    """The extractor and the :data:`SCORES` of one evaluate stage run (NaN where missing)."""
    values: dict[str, object] = {"extractor": None, **{k: float("nan") for k in SCORES}}
    if evaluate is None:
        return values
    for key, fid in FID_KINDS.items():
        if pd.notna(evaluate.get(f"metrics.{key}")):
            tag = evaluate.get("tags.extractor")
            values["extractor"] = tag if isinstance(tag, str) and tag else fid["extractor"]
            for ours, theirs in SCORES.items():
                values[ours] = float(evaluate.get(f"metrics.{theirs.format(p=fid['prefix'])}", float("nan")))
            break
    return values


def separated(runs: pd.DataFrame, low: str, high: str) -> pd.Series:
    """For each run, the labels of the runs (same dataset and extractor) whose [low, high] interval
    does not overlap its own: the only runs it is called different from. "" where none is."""

    def apart(i: str) -> str:
        a = runs.loc[i]
        if pd.isna(a[low]) or pd.isna(a[high]):
            return ""
        return ", ".join(b["label"] for j, b in runs.iterrows()
                         if j != i and b["dataset"] == a["dataset"] and b["extractor"] == a["extractor"]
                         and pd.notna(b[low]) and (b[high] < a[low] or b[low] > a[high]))

    return pd.Series([apart(i) for i in runs.index], index=runs.index, dtype=object)


def _registered(store: Store, dataset: str, run_ids: set[str]) -> tuple[str | None, str | None]:
    """The newest version of ``ncsn-<dataset>`` made by one of ``run_ids``, and the champion's version."""
    from mlflow.exceptions import MlflowException

    name = f"ncsn-{dataset}"
    try:
        versions = store.client.search_model_versions(f"name = '{name}'")
        aliases = store.client.get_registered_model(name).aliases or {}
    except MlflowException:
        return None, None
    champion = None if aliases.get(CHAMPION) is None else str(aliases[CHAMPION])
    mine = [v for v in versions if v.run_id in run_ids or any(i in (v.source or "") for i in run_ids)]
    return (str(max(int(v.version) for v in mine)) if mine else None), champion


def _stages(store: Store, chosen: pd.DataFrame) -> pd.DataFrame:
    """The stage runs of every chosen run, with the chosen run's id in column ``pipeline``."""
    frames = [stage_runs(store, row).assign(pipeline=row["run_id"]) for _, row in chosen.iterrows()]
    empty = pd.DataFrame(columns=["pipeline", "stage", "run_id", "start_time", "end_time"])
    return pd.concat([f for f in frames if not f.empty] or [empty], ignore_index=True)


def _identity(chosen: pd.DataFrame, everyone: pd.DataFrame, params: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Name, experiment, start, dataset, profile, git commit and label of each chosen run."""
    ids = list(chosen["run_id"])
    runs = chosen.set_index("run_id", drop=False)
    profile = pd.DataFrame({"tag": runs.get("tags.profile"), "param": params.get("profile")}, index=ids)
    commits = everyone.assign(**{c: first_of(everyone, [c]) for c in COMMIT_TAGS})  # "" or absent: None
    identity = pd.DataFrame({
        "run_name": first_of(runs, [RUN_NAME]).fillna(runs["run_id"].str[:8]),
        "experiment": runs["experiment_id"].map(lambda e: names.get(e, e)),
        "started": pd.to_datetime(runs["start_time"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "dataset": dataset_of(runs),
        "profile": first_of(profile, ["tag", "param"], UNKNOWN),
        "git_commit": first_of(commits.groupby("pipeline")[list(COMMIT_TAGS)].first().reindex(ids), COMMIT_TAGS,
                               UNKNOWN),
    }, index=pd.Index(ids, name="run_id"))
    return identity.assign(label=identity["dataset"] + " · " + identity.index.str[:8])


def compare(store: Store, chosen: pd.DataFrame) -> Comparison:
    """Everything the comparison shows about ``chosen`` (rows of ``select.select_runs``)."""
    ids = list(chosen["run_id"])
    stages = _stages(store, chosen)
    wall = (stages.assign(seconds=_seconds(stages)).pivot(index="pipeline", columns="stage", values="seconds")
            .reindex(index=ids, columns=list(dict.fromkeys(stages["stage"]))).astype(float))
    # The run itself first, then its stages in order: a later run's value of a parameter wins.
    everyone = pd.concat([chosen.assign(pipeline=chosen["run_id"]), stages], ignore_index=True)
    params = everyone.groupby("pipeline", sort=False)[[c for c in everyone if c.startswith("params.")]].last()
    params = params.reindex(ids).rename(columns=lambda c: c[len("params."):])
    runs = _identity(chosen, everyone, params, {e.experiment_id: e.name for e in store.client.search_experiments()})
    evaluations = stages[stages["stage"] == "evaluate"].set_index("pipeline")
    runs = runs.join(pd.DataFrame([_scores(evaluations.loc[i] if i in evaluations.index else None) for i in ids],
                                  index=runs.index))
    runs["fid_over_floor"] = runs["fid"] / runs["floor_fid"].where(runs["floor_fid"] > 0)
    runs["fid_differs_from"] = separated(runs, "fid_ci95_low", "fid_ci95_high")
    # A pipeline run spans its stages; the stages of a `dvc exp run` experiment have no run above them.
    spans = ((chosen[STAGE] == PIPELINE).to_numpy() | wall.isna().all(axis=1).to_numpy())
    runs["total_seconds"] = _seconds(chosen).set_axis(ids).where(spans, wall.sum(axis=1, min_count=1))
    members = everyone.groupby("pipeline")["run_id"].agg(set)
    registry = [_registered(store, runs.at[i, "dataset"], members[i]) for i in ids]
    runs["registered_model"] = "ncsn-" + runs["dataset"]
    runs["model_version"] = [version for version, _ in registry]
    runs["champion_version"] = [champion for _, champion in registry]
    runs["champion"] = runs["model_version"].notna() & (runs["model_version"] == runs["champion_version"])
    comparison = Comparison(runs=runs, wall=wall, params=params)
    for i in ids:
        own = stages[stages["pipeline"] == i].set_index("stage")["run_id"]
        sigmas, source = _sigmas(store, own.get("train"), params.loc[i])
        if sigmas:
            comparison.sigmas[i], comparison.sigmas_source[i] = sigmas, source
        grid = _download(store, own["sample"], "samples/grid.png") if "sample" in own else None
        if grid:
            comparison.grids[i] = grid
    return comparison
