"""The parent run of one pipeline execution, and the pipeline's housekeeping around it.

``pipeline_run(cfg)`` opens the parent run (``ncsn.tracking.runs.open_run``, named ``pipeline``)
and exports its id as ``NCSN_MLFLOW_PARENT_RUN_ID`` (and the store as ``MLFLOW_TRACKING_URI``) so
the stage runs that ``dvc repro`` starts in child processes nest under it; it logs ``params.yaml``
at the start and ``dvc.lock`` and its wall time at the end (the runs list's FID, IS, KID and
model version are ``ncsn.tracking.headline``'s). :func:`before_stage` moves it to the local store when
its server is gone; :func:`close_orphan_runs` ends the runs that dead processes left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from ncsn.config import Config
from ncsn.tracking.failover import FAILOVER_ENV, one_line
from ncsn.tracking.liveness import close_orphans
from ncsn.tracking.provenance import LOCK, dvc_root, lock_hash, run_tags
from ncsn.tracking.runs import PARENT_ENV, open_run
from ncsn.tracking.store import embedded_uri, tracking_uri
from ncsn.tracking.trackers import NullTracker, Tracker

log = logging.getLogger(__name__)

SECONDS_METRIC = "pipeline_seconds"  # the parent run's wall time, whatever its end


@contextlib.contextmanager
def pipeline_run(cfg: Config, repo: str | Path | None = None) -> Iterator[Tracker | NullTracker]:
    """The parent run of one pipeline execution in the repository ``repo`` (default: the working
    directory's).

    While open, ``NCSN_MLFLOW_PARENT_RUN_ID`` (its id) and ``MLFLOW_TRACKING_URI`` (its store)
    are set in ``os.environ`` for the stages' child processes; both are restored afterwards.
    Tagged like a stage run (without a stage hash); logs ``repo/params.yaml`` at the start, and
    ``dvc.lock`` with the tag ``dvc_lock_hash`` (``ncsn.tracking.provenance.lock_hash``) and the
    metric ``pipeline_seconds`` (its wall time) at the end. The headline figures are
    ``ncsn.tracking.headline.log_headline``'s.
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    saved = {key: os.environ.get(key) for key in (PARENT_ENV, "MLFLOW_TRACKING_URI", FAILOVER_ENV)}
    root = Path(repo) if repo is not None else (dvc_root() or Path.cwd())
    tags = run_tags(root, cfg.base.dataset, cfg.profile)
    start = time.monotonic()
    with open_run(cfg, "pipeline", None, tags, root / "params.yaml") as tracker:
        os.environ[PARENT_ENV] = tracker.run_id
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(cfg)
        try:
            yield tracker
        finally:
            _log_lock(tracker, root)
            with contextlib.suppress(Exception):  # a number never fails a run
                tracker.log_metrics({SECONDS_METRIC: time.monotonic() - start})
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _log_lock(tracker: Tracker, root: Path) -> None:
    """``root/dvc.lock`` as an artifact of the parent run, and its ``dvc_lock_hash`` tag."""
    lock = root / LOCK
    if not lock.is_file():
        return
    try:
        digest = lock_hash(root)
        if digest:
            tracker.set_tags({"dvc_lock_hash": digest})
        tracker.log_artifact(lock)
    except Exception as err:  # noqa: BLE001  (provenance never fails a run)
        log.warning("cannot log %s: %s", lock, one_line(err))


def before_stage(tracker: Tracker | NullTracker) -> None:
    """Before each stage of a pipeline: if the server of the parent run is gone, go on in the
    local store, and let the next stages nest under the parent's local run."""
    if isinstance(tracker, Tracker):
        tracker.check_server()
        os.environ[PARENT_ENV] = tracker.run_id


def close_orphan_runs(cfg: Config, server_up: bool = True) -> int:
    """Close the runs left RUNNING by dead processes of this machine (``ncsn.tracking.liveness``),
    in the tracking store (when it answers) and in the local store (when it exists).

    :return: how many runs were closed.
    """
    from mlflow import MlflowClient

    uris = [tracking_uri(cfg)] if server_up else []
    local = embedded_uri(cfg)
    if local not in uris and (Path(cfg.paths.mlflow) / "mlflow.db").is_file():
        uris.append(local)
    closed = 0
    for uri in uris:
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(cfg.tracking.experiment)
            if experiment is not None:
                closed += close_orphans(client, [experiment.experiment_id])
        except Exception as err:  # noqa: BLE001 - housekeeping never stops a pipeline
            log.warning("cannot close the orphaned runs in %s: %s", uri, one_line(err))
    return closed
