"""What a flow run shows in the Prefect UI: training progress, the metrics table, the champion decision.

* ``training_progress`` -- a progress artifact (0-100 %) that follows the last step written to
  ``train_log.csv`` while the train stage runs;
* ``publish_metrics`` -- the evaluate stage's ``metrics.json`` as a table artifact;
* ``publish_summary`` -- a markdown artifact: the model registry's champion decision for this
  run and where the HTML report lies.

Keys (``ncsn-training``, ``ncsn-metrics``, ``ncsn-summary``) group the artifacts of all runs
in the UI's Artifacts page; each flow run's page shows its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.artifacts import update_progress_artifact

PROGRESS_KEY, METRICS_KEY, SUMMARY_KEY = "ncsn-training", "ncsn-metrics", "ncsn-summary"


def last_step(train_log: Path) -> int:
    """The step of the last complete row of ``train_log.csv`` (``step,loss,images_per_s``); 0 if none."""
    try:
        text = train_log.read_text()
    except FileNotFoundError:
        return 0
    complete = text[:text.rfind("\n") + 1].splitlines()  # a row being written has no newline yet
    for line in reversed(complete[1:]):  # the first line is the header
        first = line.split(",", 1)[0]
        if first.isdigit():
            return int(first)
    return 0


@contextlib.contextmanager
def training_progress(train_log: Path, total_steps: int, interval: float = 2.0) -> Iterator[None]:
    """While open, a progress artifact shows ``100 * last_step(train_log) / total_steps``.

    Call it inside a task: a thread polls the file every ``interval`` seconds and updates the
    artifact (in a copy of the task's context, so the artifact belongs to the task's run).
    """
    def percent() -> float:
        return min(100.0, 100.0 * last_step(train_log) / max(total_steps, 1))

    shown = percent() if train_log.is_file() else 0.0
    artifact_id = create_progress_artifact(shown, key=PROGRESS_KEY,
                                           description=f"training steps done, of {total_steps}")
    stop = threading.Event()

    def poll() -> None:
        nonlocal shown
        while not stop.wait(interval):
            if (now := percent()) != shown:
                update_progress_artifact(artifact_id, now)
                shown = now

    poller = threading.Thread(target=contextvars.copy_context().run, args=(poll,), daemon=True)
    poller.start()
    try:
        yield
    finally:
        stop.set()
        poller.join(timeout=30)
        if (now := percent()) != shown:
            update_progress_artifact(artifact_id, now)


def publish_metrics(metrics_json: Path) -> None:
    """A table artifact of the evaluate stage's metrics: one row per key, numbers with 4 significant digits."""
    metrics: dict[str, Any] = json.loads(metrics_json.read_text())

    def shown(value: Any) -> str:
        if isinstance(value, float) and math.isfinite(value):
            return f"{value:.4g}"
        return str(value)

    rows = [{"metric": key, "value": shown(value)} for key, value in metrics.items()]
    create_table_artifact(rows, key=METRICS_KEY, description=f"evaluate: {metrics_json}")


def champion_decision(parent_run_id: str | None) -> str:
    """Markdown lines on the version the evaluate stage registered in this run and on the champion.

    Read from MLflow (``MLFLOW_TRACKING_URI`` of the open parent run): the tags the registry puts
    on the evaluate run (``ncsn.tracking.registered_model``, ``ncsn.model_version``, ``ncsn.champion``),
    then the FIDs recorded on the new version and on the version holding the ``champion`` alias.
    """
    if parent_run_id is None or "MLFLOW_TRACKING_URI" not in os.environ:
        return "Nothing was registered: tracking is off (`tracking.enabled: false`)."
    from mlflow import MlflowClient

    from ncsn.tracking.registry import CHAMPION

    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")
    tags = next((r.data.tags for r in children if "ncsn.model_version" in r.data.tags), None)
    if tags is None:
        return "Nothing was registered in this run (`tracking.register: false`, or evaluate was skipped by DVC)."
    name, version = tags["ncsn.tracking.registered_model"], tags["ncsn.model_version"]
    rows = ["| | version | FID |", "|---|---|---|"]
    for label, ref in (("this run", version), (f"`{CHAMPION}`", None)):
        try:
            mv = client.get_model_version(name, ref) if ref else client.get_model_version_by_alias(name, CHAMPION)
        except Exception:  # noqa: BLE001 -- no champion yet
            continue
        kind = mv.tags.get("fid_metric", "fid")
        rows.append(f"| {label} | {mv.version} | {kind} {mv.tags.get(kind, '?')} |")
    promoted = tags.get("ncsn.champion") == "true"
    verdict = (f"**Promoted:** `{name}` version {version} is the new `{CHAMPION}`." if promoted else
               f"**Not promoted:** `{name}` version {version} was registered; `{CHAMPION}` did not move.")
    return "\n".join([verdict, "", *rows])


def publish_summary(parent_run_id: str | None, report_html: Path, failed: list[str]) -> None:
    """The markdown artifact of the run: outcome, champion decision and the report's location."""
    outcome = f"Stages not completed: {', '.join(failed)}." if failed else "Every stage completed."
    try:
        decision = champion_decision(parent_run_id)
    except Exception as err:  # noqa: BLE001 -- a summary must not fail the run
        decision = f"Champion decision unavailable: {err}"
    where = (f"`{report_html}` (open `{report_html.as_uri()}` in a browser)" if report_html.is_file()
             else f"not written (`{report_html}` is missing)")
    lines = ["# NCSN pipeline run", "", outcome, "", "## Champion decision", "", decision, "",
             "## Report", "", f"HTML report: {where}"]
    create_markdown_artifact("\n".join(lines), key=SUMMARY_KEY, description="champion decision and report")
