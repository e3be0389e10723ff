"""MLflow tracking: one run per stage, nested under one parent run per pipeline execution.

Where runs go is ``ncsn.tracking.store`` (the embedded SQLite store by default,
``MLFLOW_TRACKING_URI`` for a server); the parent run of a pipeline is ``ncsn.tracking.parent_run``.

Runs. ``stage_run(cfg, stage)`` opens the run of one stage (name and tag ``ncsn.stage`` = the
stage) and logs the whole resolved configuration: every value of ``cfg.flat()`` as a parameter,
``config.yaml`` (the resolved config) and ``params.yaml`` (the composed file the stage read, as
DVC saw it) as artifacts; it nests under ``$NCSN_MLFLOW_PARENT_RUN_ID`` when set. A run ends
FINISHED, FAILED on an exception (the error's one line as the tag ``ncsn.error``), KILLED on
Ctrl-C or SIGTERM. Each run names its process (tags ``ncsn.host``, ``ncsn.pid``) so that runs of
processes killed outright can be closed later (``ncsn.tracking.liveness``).

A server that is down, wrong or dies: when it cannot be reached, or a call fails later, the run
goes on in the embedded store (``ncsn.tracking.failover``, ``ncsn.tracking.trackers``), one warning
line says so, and ``ncsn tracking sync`` (``ncsn.tracking.sync``) sends it once the server is back.

Provenance. Every run is tagged with ``dataset``, ``profile``, ``git_commit``, ``git_dirty`` and,
for a stage that DVC runs, ``dvc_stage_hash`` (its inputs' key, equal to the key of its ``dvc.lock`` entry);
the parent run gets ``dvc_lock_hash`` when the pipeline ends (``ncsn.tracking.provenance``). With these
and the ``params.yaml`` artifact any run can be brought back (README, "Bringing a run back").

Privacy. Nothing secret is logged: a parameter whose name looks like a credential, or whose
value contains the value of an environment variable whose name does (``*TOKEN*``,
``*PASSWORD*``, ``*SECRET*``, ``*KEY*``, ...), or a URL's ``user:password@`` part, is logged
as ``[redacted]`` (``ncsn.tracking.redaction``).

With ``tracking.enabled: false`` the context managers yield a :class:`NullTracker` and MLflow
is not imported. The trackers are in ``ncsn.tracking.trackers``; the noise levels are logged by
``ncsn.tracking.sigma_logging``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import yaml

from ncsn.config import Config
from ncsn.tracking.failover import (CONTINUES_TAG, FAILOVER_FROM_TAG, SERVER_PARENT_TAG, failed_over, is_remote,
                                    one_line, switch_to_local, unavailable)
from ncsn.tracking.liveness import process_tags
from ncsn.tracking.provenance import run_tags
from ncsn.tracking.redaction import redact
from ncsn.tracking.store import configure, ensure_experiment, local_uri, preflight, tracking_uri
from ncsn.tracking.trackers import Fallback, NullTracker, Tracker

log = logging.getLogger(__name__)

PARENT_ENV = "NCSN_MLFLOW_PARENT_RUN_ID"
STAGE_TAG = "ncsn.stage"
PARAMS_ARTIFACT = "params.yaml"
ERROR_TAG = "ncsn.error"  # a failed run: the error's one line


def _log_params_file(tracker: Tracker, path: Path) -> None:
    """``path`` as the run's ``params.yaml`` artifact: its bytes, or its values with secrets redacted."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError:
        return  # the stage refuses it before anything runs
    if redact("params", values) != values:
        text = yaml.safe_dump(redact("params", values), sort_keys=False)
    tracker.log_text(text, PARAMS_ARTIFACT)


def _start(cfg: Config, name: str, parent_id: str | None, tags: dict[str, str]):
    """Start the fluent MLflow run ``name`` in the store that ``cfg`` points at; return it."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    experiment_id = configure(cfg)
    active = mlflow.active_run()
    start_tags = {STAGE_TAG: name, **tags}
    if active is not None:  # in-process parent (tests, notebooks): nest under it
        parent_id = active.info.run_id
    elif parent_id:
        try:
            parent = MlflowClient().get_run(parent_id)
            experiment_id = parent.info.experiment_id  # a child must live in its parent's experiment
        except MlflowException as err:
            if is_remote(tracking_uri(cfg)) and unavailable(err):
                raise
            if failed_over():  # the parent is on the server: linked by a tag, for ncsn tracking sync
                start_tags[SERVER_PARENT_TAG] = parent_id
            else:
                log.warning("%s=%s is not a run in %s (%s); starting a top-level run",
                            PARENT_ENV, parent_id, tracking_uri(cfg), one_line(err))
            parent_id = None
    return mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=active is not None,
                            parent_run_id=parent_id, tags=start_tags), parent_id


def _fallback(cfg: Config, name: str, parent_id: str | None, tags: dict[str, str], start_ms: int) -> Fallback:
    """How a run on the server goes on in the local store (``ncsn.tracking.trackers.Fallback``)."""
    server, local = tracking_uri(cfg), local_uri(cfg)

    def open_local(server_run_id: str):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=local, registry_uri=local)
        experiment_id = ensure_experiment(client, cfg.tracking.experiment, local)
        run_tags = {STAGE_TAG: name, "mlflow.runName": name, **tags, FAILOVER_FROM_TAG: server,
                    CONTINUES_TAG: server_run_id, **({SERVER_PARENT_TAG: parent_id} if parent_id else {})}
        run = client.create_run(experiment_id, start_time=start_ms, tags=run_tags, run_name=name)
        return client, run.info.run_id

    return Fallback(server, local, open_local)


@contextlib.contextmanager
def open_run(cfg: Config, name: str, parent_id: str | None, tags: dict[str, str],
         params_file: Path) -> Iterator[Tracker]:
    """An MLflow run named ``name`` (tag ``ncsn.stage``, and ``tags``), with the config and
    ``params_file`` logged; ended with its status (FAILED with the error's line as the tag
    ``ncsn.error``). A server that cannot be reached, now or later, sends the run to the local
    store (``ncsn.tracking.failover``)."""
    import time

    server, reason = preflight(cfg)
    if reason is not None:
        switch_to_local(server, local_uri(cfg), reason)
    tags = {**tags, **process_tags()}
    start_ms = int(time.time() * 1000)
    try:
        run, parent_id = _start(cfg, name, parent_id, {**tags, **_failover_tags()})
    except Exception as err:
        if not (is_remote(tracking_uri(cfg)) and unavailable(err)):
            raise
        switch_to_local(server, local_uri(cfg), one_line(err))
        run, parent_id = _start(cfg, name, parent_id, {**tags, **_failover_tags()})
    remote = is_remote(tracking_uri(cfg))
    fallback = _fallback(cfg, name, parent_id, tags, start_ms) if remote else None
    tracker = Tracker(run.info.run_id, fallback=fallback)
    status = "FINISHED"
    try:
        tracker.set_tags(tags)
        tracker.log_params(cfg.flat())
        tracker.log_text(yaml.safe_dump(redact("config", cfg.to_dict()), sort_keys=False), "config.yaml")
        _log_params_file(tracker, params_file)
        yield tracker
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (ncsn.cli turns it into Terminated)
        status = "KILLED"
        raise
    except BaseException as err:
        status = "FAILED"
        with contextlib.suppress(Exception):
            tracker.set_tags({ERROR_TAG: one_line(err)})
        raise
    finally:
        tracker.end(status)


def _failover_tags() -> dict[str, str]:
    server = failed_over()
    return {FAILOVER_FROM_TAG: server} if server else {}


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str, params_file: str | Path = "params.yaml") -> Iterator[Tracker | NullTracker]:
    """The MLflow run of one stage, nested under ``$NCSN_MLFLOW_PARENT_RUN_ID`` when set.

    Logs ``cfg.flat()`` as parameters, the resolved config as ``config.yaml`` and ``params_file``
    (the file ``cfg`` was read from) as ``params.yaml`` (secrets redacted), and tags the run with
    its provenance (``ncsn.tracking.provenance.run_tags``: dataset, profile, git commit and, when DVC runs
    the stage, its stage hash in the repository holding the working directory). Yields a :class:`NullTracker`
    when ``tracking.enabled`` is false.
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    tags = run_tags(None, cfg.base.dataset, cfg.profile, stage)
    with open_run(cfg, stage, os.environ.get(PARENT_ENV) or None, tags, Path(params_file)) as tracker:
        yield tracker
