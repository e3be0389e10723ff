"""A pipeline's headline on its parent run: what MLflow's runs list compares pipelines by.

The evaluate stage logs its numbers on its own (nested) run; the runs list shows the parent runs,
so :func:`log_headline` also puts there, once the stages are done:

* the FID, IS and KID (mean) in the extractor's feature space, named as in ``metrics.json``
  (``classifier_fid``, ``classifier_is``, ``classifier_kid_mean``; ``fid``, ... for Inception;
  ``raw_fid`` for 2-D data), and ``bits_per_dim`` when the evaluate stage measured it;
* the tag ``extractor`` (the feature extractor's name: FIDs of different extractors do not compare);
* the registered model version, as the evaluate run names it (tags ``ncsn.tracking.registered_model``
  and ``ncsn.model_version``), with a link to it in the run's description (``mlflow.note.content``):
  MLflow's "Registered models" box lists only the versions whose source is the run itself, and a
  version has one source run, the evaluate stage's.

The pipeline's wall time (``pipeline_seconds``) is logged by ``ncsn.tracking.parent_run``.
A headline that cannot be logged is a warning, never a failed pipeline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ncsn.config import Config
from ncsn.evaluation import FID_KINDS
from ncsn.tracking.failover import one_line
from ncsn.tracking.trackers import NullTracker, Tracker

log = logging.getLogger(__name__)

MODEL_TAG = "ncsn.tracking.registered_model"  # as the evaluate run is tagged (ncsn.tracking.registry)
VERSION_TAG = "ncsn.model_version"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (Markdown)
HEADLINE = ("fid", "is", "kid_mean")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The FID, IS, KID (mean) and bits/dim of the evaluate stage's ``metrics``, under their names there."""
    prefix = next((fid["prefix"] for key, fid in FID_KINDS.items() if key in metrics), None)
    names = [f"{prefix}{name}" for name in HEADLINE] if prefix is not None else []
    return {key: float(metrics[key]) for key in [*names, "bits_per_dim"] if key in metrics}


def log_headline(tracker: Tracker | NullTracker, cfg: Config) -> None:
    """Log the headline of ``cfg``'s evaluate stage (``paths.evaluate``/metrics.json) on the parent run."""
    path = Path(cfg.paths.evaluate) / "metrics.json"
    if not isinstance(tracker, Tracker) or not path.is_file():
        return
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        tracker.log_metrics(headline_metrics(metrics))
        tags = {"extractor": str(metrics["extractor"])} if "extractor" in metrics else {}
        version = tracker.call(lambda client, run_id: registered_version(client, run_id, cfg))
        if version is not None:
            name, number = version
            tags |= {MODEL_TAG: name, VERSION_TAG: number,
                     NOTE_TAG: f"Registered model: [{name} v{number}](#/models/{name}/versions/{number})"}
        tracker.set_tags(tags)
    except Exception as err:  # noqa: BLE001 - the headline never fails a pipeline
        log.warning("cannot log the headline on the pipeline's run: %s", one_line(err))


def registered_version(client, parent_id: str, cfg: Config) -> tuple[str, str] | None:
    """``(model name, version)`` registered for this pipeline run ``parent_id``: by its evaluate run, or,
    when DVC skipped the evaluate stage, the latest version registered from the same final checkpoint."""
    from ncsn.storage.checkpoint import file_sha256, final_model_path
    from ncsn.tracking.registered_model import model_name

    experiment_id = client.get_run(parent_id).info.experiment_id
    evaluate = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
                                                   " and tags.`ncsn.stage` = 'evaluate'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    if evaluate and evaluate[0].data.tags.get(VERSION_TAG) not in (None, "None"):
        tags = evaluate[0].data.tags
        return tags[MODEL_TAG], tags[VERSION_TAG]
    checkpoint = final_model_path(cfg)
    if not checkpoint.is_file():
        return None
    name, digest = model_name(cfg.base.dataset), file_sha256(checkpoint)
    same = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("checkpoint_sha256") == digest]
    return (name, str(max(int(v.version) for v in same))) if same else None
