"""What one pipeline run measured, read back from MLflow: a :class:`RunSummary`.

Where each value comes from (the layout that ``ncsn.tracking.runs`` and the stages write):

* dataset, profile, git commit -- tags ``dataset``, ``profile``, ``git_commit`` of the run when
  present; else the parameters ``base.dataset`` and ``profile``, and MLflow's own
  ``mlflow.source.git.commit`` tag; else ``unknown``;
* parameters -- the parent's and every stage's (``cfg.flat()``, plus the train stage's ``sigmas.*``);
* σ schedule -- the train stage's ``sigma_schedule/sigmas.csv`` artifact; else computed from
  ``model.sigma_begin``, ``model.sigma_end``, ``model.num_levels`` (geometric, Eq. of ``ncsn.core.sigmas``);
* sample grid -- the sample stage's ``samples/grid.png`` artifact;
* IS / FID / KID and the real-vs-real floor -- the evaluate stage's metrics, prefixed by its
  feature extractor (``classifier_``, ``raw_``, none for Inception);
* wall time -- end minus start of each stage's run;
* registered version -- the version of ``ncsn-<dataset>`` made from one of the run's runs, and
  whether the alias ``champion`` points at it now.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncsn.reporting.compare.select import PIPELINE, STAGE_TAG, Store, dataset_of, stage_runs

UNKNOWN = "unknown"
CHAMPION = "champion"  # ncsn.tracking.registry.CHAMPION
# FID metric key -> (metric prefix, extractor shown when the run has no ``extractor`` tag).
EXTRACTORS = {"classifier_fid": ("classifier_", "classifier"), "fid": ("", "Inception"), "raw_fid": ("raw_", "raw")}


@dataclass
class RunSummary:
    """One run as the comparison shows it. Missing values are None."""

    run_id: str
    name: str
    experiment: str
    start_ms: int
    dataset: str
    profile: str
    git_commit: str
    params: dict[str, str] = field(default_factory=dict)
    extractor: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)  # is, fid, kid_mean, ..., see SCORES
    stage_seconds: dict[str, float | None] = field(default_factory=dict)
    total_seconds: float | None = None
    sigmas: list[float] | None = None
    sigmas_source: str = ""
    grid_png: bytes | None = None
    registered_model: str | None = None
    model_version: str | None = None
    champion: bool = False
    champion_version: str | None = None  # where the alias points now, this run's or not

    @property
    def fid_over_floor(self) -> float | None:
        """FID ÷ the dataset's own real-vs-real FID (1 = as close as real data; lower is better)."""
        fid, floor = self.metrics.get("fid"), self.metrics.get("floor_fid")
        if fid is None or floor is None or not floor > 0:
            return None
        return fid / floor

    @property
    def label(self) -> str:
        """``dataset · first 8 characters of the run id`` for legends, captions and headers."""
        return f"{self.dataset} · {self.run_id[:8]}"


# Scores read from the evaluate stage: our name -> metric key without the extractor prefix.
SCORES = {"is": "{p}is", "fid": "{p}fid", "kid_mean": "{p}kid_mean", "kid_std": "{p}kid_std",
          "floor_fid": "floor_{p}fid_train_vs_test", "floor_kid_mean": "floor_{p}kid_mean_train_vs_test",
          "reference_is": "reference_{p}is_test", "n_samples": "n_samples"}


def _seconds(run: Any) -> float | None:
    end = run.info.end_time
    return (end - run.info.start_time) / 1000.0 if end and run.info.start_time else None


def _git_commit(runs: list[Any]) -> str:
    for key in ("git_commit", "mlflow.source.git.commit"):
        for run in runs:
            if run.data.tags.get(key):
                return run.data.tags[key]
    return UNKNOWN


def _download(store: Store, run: Any, path: str) -> bytes | None:
    """The bytes of one artifact of ``run``, or None when it is not there."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = store.client.download_artifacts(run.info.run_id, path, tmp)
        except (MlflowException, OSError):
            return None
        file = Path(local)
        return file.read_bytes() if file.is_file() else None


def _sigmas(store: Store, train: Any | None, params: dict[str, str]) -> tuple[list[float] | None, str]:
    """The σ schedule and where it came from."""
    if train is not None:
        data = _download(store, train, "sigma_schedule/sigmas.csv")
        if data:
            rows = list(csv.DictReader(io.StringIO(data.decode())))
            return [float(r["sigma"]) for r in rows], "train stage"
    try:
        begin, end, levels = (float(params["model.sigma_begin"]), float(params["model.sigma_end"]),
                              int(params["model.num_levels"]))
    except (KeyError, ValueError):  # absent, or "auto" (set from the data by the train stage)
        return None, ""
    from ncsn.core.sigmas import geometric_sigmas

    return [float(s) for s in geometric_sigmas(begin, end, levels)], "parameters"


def _scores(evaluate: Any | None) -> tuple[str | None, dict[str, float | None]]:
    if evaluate is None:
        return None, {}
    metrics = evaluate.data.metrics
    for key, (prefix, default_name) in EXTRACTORS.items():
        if key in metrics:
            name = evaluate.data.tags.get("extractor") or default_name
            values = {ours: metrics.get(theirs.format(p=prefix)) for ours, theirs in SCORES.items()}
            return name, {k: (None if v is None or math.isnan(v) else float(v)) for k, v in values.items()}
    return None, {}


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


def summarise(store: Store, run: Any, experiment: str) -> RunSummary:
    """Everything the comparison shows about ``run`` (a pipeline run, or a stage run on its own)."""
    stages = stage_runs(store, run)
    everyone = [run, *stages.values()]
    params: dict[str, str] = {}
    for r in everyone:
        params.update(r.data.params)
    tags = run.data.tags
    summary = RunSummary(
        run_id=run.info.run_id, name=run.info.run_name or run.info.run_id[:8], experiment=experiment,
        start_ms=run.info.start_time or 0, dataset=dataset_of(run),
        profile=tags.get("profile") or params.get("profile") or UNKNOWN, git_commit=_git_commit(everyone),
        params=params)
    summary.extractor, summary.metrics = _scores(stages.get("evaluate"))
    summary.stage_seconds = {stage: _seconds(r) for stage, r in stages.items()}
    times = [t for t in summary.stage_seconds.values() if t is not None]
    # A pipeline run spans its stages; the stages of a `dvc exp run` experiment have no run above them.
    summary.total_seconds = _seconds(run) if run.data.tags.get(STAGE_TAG) == PIPELINE or not times else sum(times)
    summary.sigmas, summary.sigmas_source = _sigmas(store, stages.get("train"), params)
    if "sample" in stages:
        summary.grid_png = _download(store, stages["sample"], "samples/grid.png")
    summary.registered_model = f"ncsn-{summary.dataset}"
    summary.model_version, summary.champion_version = _registered(store, summary.dataset,
                                                                  {r.info.run_id for r in everyone})
    summary.champion = summary.model_version is not None and summary.model_version == summary.champion_version
    return summary
