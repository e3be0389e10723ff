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

Idempotent. A server run that holds a copy carries ``ncsn.tracking.source_run`` (the local run's
id) from its creation and ``ncsn.tracking.sync_complete`` = ``true`` once everything is there; a
later sync skips it, or finishes it when an earlier sync was cut short (``ncsn.tracking.run_copy``,
one run at a time). The local run is then tagged
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
from pathlib import Path
from typing import Any

from ncsn.config import Config, ConfigError
from ncsn.tracking.failover import FAILOVER_FROM_TAG, SYNCED_TAG, is_remote, one_line, probe
from ncsn.tracking.liveness import PID_TAG, close_orphans, owner_alive
from ncsn.tracking.run_copy import PARENT_TAG, copy_run

log = logging.getLogger(__name__)


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

    from ncsn.tracking.store import embedded_uri

    if not (Path(cfg.paths.mlflow) / "mlflow.db").is_file():
        return None
    uri = embedded_uri(cfg)
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
        parent = by_id.get(run.data.tags.get(PARENT_TAG, ""))
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

    from ncsn.tracking.store import connect

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
        copy_run(src, dst, run, target, mapped, experiments, report, dry_run)
    return report


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
