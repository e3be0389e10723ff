"""``ncsn tracking sync [--to URI] [--dry-run]``: send the local store's runs to a tracking server.

The runs that failed over (``ncsn.tracking.failover``) live in the embedded store
(``<paths.mlflow>/mlflow.db``). Once the server is back, :func:`sync` replays every local run
that is not on it yet, parents before children:

* a local run that continues a server run (tag ``ncsn.tracking.continues``) completes that run in
  place; any other run gets a new server run in the experiment of the same name;
* parameters the server run lacks, every tag (a local parent becomes its server copy; a parent on
  the server, tag ``ncsn.tracking.server_parent``, is linked as it is), metrics with their steps
  and timestamps (the points the server lacks), every artifact, the status and end time;
* the run's registered model versions, with their tags, registered and promoted on the server
  through the same race-safe rule as the evaluate stage (``ncsn.tracking.registry.register_version``).

Idempotent. A server run that holds a copy carries :data:`SOURCE_TAG` (the local run's id) from
its creation and :data:`COMPLETE_TAG` = ``true`` once everything is there; a later sync skips
it, or finishes it when an earlier sync was cut short. The local run is then tagged
``ncsn.tracking.synced_to`` (``URI RUN_ID``); :func:`waiting_runs` counts the failed-over runs
without it. Runs whose process still runs are left for later.

The server is, in this order: ``--to``, ``$MLFLOW_TRACKING_URI``, the one server that the local
runs failed over from.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ncsn.config import Config, ConfigError
from ncsn.tracking.failover import (CONTINUES_TAG, FAILOVER_FROM_TAG, SERVER_PARENT_TAG, SYNCED_TAG, is_remote,
                                    one_line, probe)
from ncsn.tracking.liveness import PID_TAG, close_orphans, owner_alive

log = logging.getLogger(__name__)

SOURCE_TAG = "ncsn.tracking.source_run"  # on a server run: the local run it was copied from
COMPLETE_TAG = "ncsn.tracking.sync_complete"
SOURCE_VERSION_TAG = "ncsn.tracking.source_version"  # on a server model version: "name/version" in the local store
_PARENT = "mlflow.parentRunId"


class SyncError(RuntimeError):
    """Nothing can be sent: no server named, or it cannot be reached."""


@dataclasses.dataclass
class SyncReport:
    """What a sync sent (or would send, for a dry run)."""

    target: str
    runs: list[str] = dataclasses.field(default_factory=list)  # "stage run_id -> server run_id"
    metric_points: int = 0
    artifacts: int = 0
    versions: list[str] = dataclasses.field(default_factory=list)  # "name vN"
    skipped: int = 0  # already on the server
    waiting: int = 0  # still running: left for a later sync

    def line(self, dry_run: bool) -> str:
        verb = "would copy" if dry_run else "copied"
        versions = f", model version(s) {', '.join(self.versions)}" if self.versions else ""
        return (f"ncsn tracking sync: {verb} {len(self.runs)} run(s) ({self.metric_points} metric points,"
                f" {self.artifacts} artifact files{versions}) to {self.target}; {self.skipped} already there"
                + (f"; {self.waiting} still running, left for later" if self.waiting else ""))


def _local(cfg: Config) -> tuple[str, Any] | None:
    from mlflow import MlflowClient

    from ncsn.tracking.runs import _default_uri

    if not (Path(cfg.paths.mlflow) / "mlflow.db").is_file():
        return None
    uri = _default_uri(cfg)
    return uri, MlflowClient(tracking_uri=uri, registry_uri=uri)


def _all_runs(client) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = []
    for start in range(0, len(ids), 100):
        page_token = None
        while True:
            page = client.search_runs(ids[start:start + 100], max_results=1000, page_token=page_token,
                                      order_by=["attributes.start_time ASC"])
            runs += list(page)
            page_token = page.token
            if not page_token:
                break
    return runs


def waiting_runs(cfg: Config) -> int:
    """How many runs of the local store failed over and have not been synced yet (0 without a local store)."""
    local = _local(cfg)
    if local is None:
        return 0
    try:
        return sum(1 for r in _all_runs(local[1]) if FAILOVER_FROM_TAG in r.data.tags and SYNCED_TAG not in r.data.tags)
    except Exception as err:  # noqa: BLE001 - a summary line never fails a pipeline
        log.warning("cannot count the runs waiting for a sync: %s", one_line(err))
        return 0


def _target(to: str | None, local_uri: str, runs: list) -> str:
    if to:
        return to
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != local_uri:
        return env
    servers = sorted({r.data.tags[FAILOVER_FROM_TAG] for r in runs if FAILOVER_FROM_TAG in r.data.tags})
    if len(servers) == 1:
        return servers[0]
    named = f" (the local runs failed over from {', '.join(servers)})" if servers else ""
    raise SyncError(f"no tracking server to sync to{named}: pass --to URI or set MLFLOW_TRACKING_URI")


def _ordered(runs: list) -> list:
    """Parents before children (start time first, then any parent that started later)."""
    by_id = {r.info.run_id: r for r in runs}
    done: set[str] = set()
    out = []

    def visit(run, depth=0):
        if run.info.run_id in done or depth > 50:
            return
        parent = by_id.get(run.data.tags.get(_PARENT, ""))
        if parent is not None:
            visit(parent, depth + 1)
        done.add(run.info.run_id)
        out.append(run)

    for run in runs:
        visit(run)
    return out


def sync(cfg: Config, to: str | None = None, dry_run: bool = False) -> SyncReport:
    """Copy the local store's runs that are not on the server yet (see module docstring).

    :raises SyncError: no server named, or it does not answer.
    """
    import mlflow
    from mlflow import MlflowClient

    from ncsn.tracking.runs import connect

    connect(cfg)  # telemetry off, bounded retries
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow.store.model_registry.abstract_store").setLevel(logging.WARNING)
    local = _local(cfg)
    if local is None:
        return SyncReport(to or os.environ.get("MLFLOW_TRACKING_URI", "(no server)"))
    local_uri, src = local
    close_orphans(src, [e.experiment_id for e in src.search_experiments()])
    runs = _all_runs(src)
    target = _target(to, local_uri, runs)
    if target == local_uri:
        raise SyncError(f"{target} is the local store itself")
    if is_remote(target) and (reason := probe(target)) is not None:
        raise SyncError(f"tracking server {target} unavailable ({reason}); nothing sent")
    dst = MlflowClient(tracking_uri=target, registry_uri=target)
    mlflow.set_tracking_uri(target)  # runs:/ and mlflow-artifacts:/ URIs resolve on the server
    report = SyncReport(target)
    mapped: dict[str, str] = {}  # local run id -> server run id
    experiments: dict[str, str] = {}
    for run in _ordered(runs):
        if run.info.status == "RUNNING" and owner_alive(run.data.tags.get(PID_TAG, "")):
            report.waiting += 1
            continue
        _sync_run(src, dst, run, target, mapped, experiments, report, dry_run)
    return report


def _experiment(src, dst, run, target: str, experiments: dict[str, str]) -> str:
    from ncsn.tracking.runs import ensure_experiment

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


def _sync_run(src, dst, run, target: str, mapped: dict[str, str], experiments: dict[str, str],
              report: SyncReport, dry_run: bool) -> None:
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
    parent = mapped.get(tags.get(_PARENT, ""), tags.get(SERVER_PARENT_TAG))
    copied_tags = {k: v for k, v in tags.items() if k != _PARENT and k != SYNCED_TAG}
    copied_tags |= {SOURCE_TAG: local_id, COMPLETE_TAG: "false", **({_PARENT: parent} if parent else {})}
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


# ----------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``ncsn tracking sync [--to URI] [--dry-run]``."""
    sub = parser.add_subparsers(dest="tracking_command", required=True, metavar="COMMAND")
    sync_parser = sub.add_parser("sync", help="send the runs of the local store (outputs/mlflow) to a tracking server")
    sync_parser.add_argument("--to", metavar="URI", help="the server (default: $MLFLOW_TRACKING_URI, else the one"
                                                         " the local runs failed over from)")
    sync_parser.add_argument("--dry-run", action="store_true", help="list what would be sent, send nothing")


def run(args: argparse.Namespace) -> int:
    """Exit code 0: done (or nothing to send), 2: no server, or it cannot be reached."""
    from ncsn.config import load_config

    try:
        cfg = load_config(args.params)
        report = sync(cfg, to=args.to, dry_run=args.dry_run)
    except (SyncError, ConfigError, FileNotFoundError) as err:
        print(f"ncsn tracking sync: error: {err}", file=sys.stderr)
        return 2
    for line in report.runs:
        print(f"  {line}")
    print(report.line(args.dry_run))
    return 0
