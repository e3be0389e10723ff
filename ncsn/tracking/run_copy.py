"""Copy one run of the local store to a tracking server, for ``ncsn tracking sync`` (``ncsn.tracking.sync``).

:func:`copy_run` completes the server run that a local run continues (tag
``ncsn.tracking.continues``) or creates one in the experiment of the same name, then sends what the
server lacks: parameters, every tag, metric points with their steps and timestamps, every
artifact, the status and end time, and the run's registered model versions (registered and
promoted through the evaluate stage's race-safe rule, ``ncsn.tracking.registry.register_version``).

Idempotent: the server run carries :data:`SOURCE_TAG` (the local run's id) from its creation and
:data:`COMPLETE_TAG` = ``true`` once everything is there; a later copy skips it, or finishes it
when an earlier one was cut short. A model version copied carries :data:`SOURCE_VERSION_TAG`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ncsn.tracking.failover import CONTINUES_TAG, SERVER_PARENT_TAG, SYNCED_TAG

if TYPE_CHECKING:
    from ncsn.tracking.sync import SyncReport

SOURCE_TAG = "ncsn.tracking.source_run"  # on a server run: the local run it was copied from
COMPLETE_TAG = "ncsn.tracking.sync_complete"
SOURCE_VERSION_TAG = "ncsn.tracking.source_version"  # on a server model version: "name/version" in the local store
PARENT_TAG = "mlflow.parentRunId"


def _experiment(src, dst, run, target: str, experiments: dict[str, str]) -> str:
    from ncsn.tracking.store import ensure_experiment

    if run.info.experiment_id not in experiments:
        name = src.get_experiment(run.info.experiment_id).name
        experiments[run.info.experiment_id] = ensure_experiment(dst, name, target)
    return experiments[run.info.experiment_id]


def _find(dst, run, experiment_id: str):
    """The server run holding (part of) a copy of ``run``: the run it continues, or one tagged with its id."""
    from mlflow.exceptions import MlflowException

    found = dst.search_runs([experiment_id], f"tags.`{SOURCE_TAG}` = '{run.info.run_id}'", max_results=1)
    if found:
        return found[0]
    continued = run.data.tags.get(CONTINUES_TAG)
    if continued:
        try:
            return dst.get_run(continued)
        except MlflowException:
            return None
    return None


def copy_run(src, dst, run, target: str, mapped: dict[str, str], experiments: dict[str, str],
             report: SyncReport, dry_run: bool) -> None:
    """Copy local ``run`` from client ``src`` to client ``dst`` (the server ``target``), noting it in ``report``.

    ``mapped`` (local run id -> server run id) grows by this run, so that its children nest under
    its copy; ``experiments`` caches local experiment id -> server experiment id.
    """
    from mlflow.entities import Metric, Param, RunTag

    local_id, tags = run.info.run_id, run.data.tags
    experiment_id = _experiment(src, dst, run, target, experiments)
    existing = _find(dst, run, experiment_id)
    if existing is not None and existing.data.tags.get(COMPLETE_TAG) == "true" \
            and existing.data.tags.get(SOURCE_TAG) == local_id:
        mapped[local_id] = existing.info.run_id
        report.skipped += 1
        if tags.get(SYNCED_TAG) is None and not dry_run:
            src.set_tag(local_id, SYNCED_TAG, f"{target} {existing.info.run_id}")
        return
    parent = mapped.get(tags.get(PARENT_TAG, ""), tags.get(SERVER_PARENT_TAG))
    copied_tags = {k: v for k, v in tags.items() if k != PARENT_TAG and k != SYNCED_TAG}
    copied_tags |= {SOURCE_TAG: local_id, COMPLETE_TAG: "false", **({PARENT_TAG: parent} if parent else {})}
    server_metrics = _metric_points(dst, existing) if existing is not None else set()
    points = [Metric(m.key, m.value, m.timestamp, m.step) for key in run.data.metrics
              for m in src.get_metric_history(local_id, key)]
    points = [m for m in points if (m.key, m.timestamp, m.step, m.value) not in server_metrics]
    versions = src.search_model_versions(f"run_id = '{local_id}'")
    with tempfile.TemporaryDirectory() as tmp:
        files = _download(src, local_id, Path(tmp))
        report.metric_points += len(points)
        report.artifacts += len(files)
        stage = tags.get("ncsn.stage", run.info.run_name)
        if dry_run:
            where = f"completes {existing.info.run_id}" if existing is not None else "new run"
            report.runs.append(f"{stage} {local_id} ({where})")
            report.versions += [f"{v.name} (local v{v.version})" for v in versions]
            mapped[local_id] = existing.info.run_id if existing is not None else f"<new {local_id}>"
            return
        if existing is None:
            target_id = dst.create_run(experiment_id, start_time=run.info.start_time, tags=copied_tags,
                                       run_name=run.info.run_name).info.run_id
            params_there: set[str] = set()
        else:
            target_id = existing.info.run_id
            params_there = set(existing.data.params)
        mapped[local_id] = target_id
        params = [Param(k, v) for k, v in run.data.params.items() if k not in params_there]
        tag_items = [RunTag(k, v) for k, v in copied_tags.items()]
        for start in range(0, len(params), 100):
            dst.log_batch(target_id, params=params[start:start + 100])
        for start in range(0, len(tag_items), 100):
            dst.log_batch(target_id, tags=tag_items[start:start + 100])
        for start in range(0, len(points), 1000):
            dst.log_batch(target_id, metrics=points[start:start + 1000])
        if files:
            dst.log_artifacts(target_id, tmp)
    for version in versions:
        report.versions.append(_sync_version(dst, version, target_id))
    dst.set_terminated(target_id, run.info.status, end_time=run.info.end_time)
    dst.set_tag(target_id, COMPLETE_TAG, "true")
    src.set_tag(local_id, SYNCED_TAG, f"{target} {target_id}")
    report.runs.append(f"{stage} {local_id} -> {target_id}")


def _metric_points(dst, run) -> set[tuple[str, int, int, float]]:
    return {(m.key, m.timestamp, m.step, m.value) for key in run.data.metrics
            for m in dst.get_metric_history(run.info.run_id, key)}


def _download(src, run_id: str, dest: Path) -> list[Path]:
    """Every artifact file of a local run, copied under ``dest``."""
    if not src.list_artifacts(run_id):
        return []
    src.download_artifacts(run_id, "", str(dest))
    return [p for p in dest.rglob("*") if p.is_file()]


def _sync_version(dst, version, target_run: str) -> str:
    """Register local ``version`` on the server for ``target_run`` (once), promoted by the usual rule."""
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    from ncsn.tracking.registered_model import ARTIFACT_PATH
    from ncsn.tracking.registry import register_version

    key = f"{version.name}/{version.version}"
    there = [v for v in dst.search_model_versions(f"name = '{version.name}'")
             if v.tags.get(SOURCE_VERSION_TAG) == key] if _has_model(dst, version.name) else []
    if there:
        return f"{version.name} v{there[0].version} (already there)"
    tags = {k: v for k, v in version.tags.items() if k != "ncsn.verified"} | {SOURCE_VERSION_TAG: key}
    source = RunsArtifactRepository.get_underlying_uri(f"runs:/{target_run}/{ARTIFACT_PATH}")
    result = register_version(dst, version.name, tags.get("dataset", ""), source, target_run, tags,
                              version.description or "")
    if result["promoted"]:
        return f"{version.name} v{result['version']} (champion)"
    return f"{version.name} v{result['version']}"


def _has_model(dst, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        dst.get_registered_model(name)
        return True
    except MlflowException:
        return False
