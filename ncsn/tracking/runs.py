"""MLflow tracking: one run per stage, nested under one parent run per pipeline execution.

Where runs go. By default an embedded store that needs no server: the SQLite database
``<paths.mlflow>/mlflow.db`` with artifacts under ``<paths.mlflow>/artifacts`` (both absolute,
resolved from the working directory, i.e. the repository root where the stages run). MLflow
>= 3.13 refuses the old ``./mlruns`` folder store, hence SQLite. ``MLFLOW_TRACKING_URI`` in the
environment wins, for a real tracking server. Browse the embedded store, on this machine only::

    mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///outputs/mlflow/mlflow.db

Runs. ``stage_run(cfg, stage)`` opens the run of one stage (name and tag ``ncsn.stage`` = the
stage) and logs the whole resolved configuration: every value of ``cfg.flat()`` as a parameter,
``config.yaml`` (the resolved config) and ``params.yaml`` (the composed file the stage read, as
DVC saw it) as artifacts. ``pipeline_run(cfg)`` opens the parent run of one pipeline execution
and exports its id as ``NCSN_MLFLOW_PARENT_RUN_ID`` (and the store as ``MLFLOW_TRACKING_URI``)
so the stage runs that ``dvc repro`` starts in child processes nest under it; it logs
``params.yaml`` at the start and ``dvc.lock`` at the end. A run ends FINISHED, FAILED on an
exception (the error's one line as the tag ``ncsn.error``), KILLED on Ctrl-C or SIGTERM. Each run
names its process (tags ``ncsn.host``, ``ncsn.pid``) so that :func:`close_orphan_runs` can end the
runs of processes killed outright (``ncsn.tracking.liveness``).

A server that is down, wrong or dies. :func:`preflight` asks it first (a few seconds at most); when
it cannot be reached, or a call fails later, the run goes on in the embedded store
(``ncsn.tracking.failover``, ``ncsn.tracking.trackers``), one warning line says so, and
``ncsn tracking sync`` (``ncsn.tracking.sync``) sends it once the server is back.

Provenance. Every run is tagged with ``dataset``, ``profile``, ``git_commit``, ``git_dirty`` and,
for a stage that DVC runs, ``dvc_stage_hash`` (its inputs' key, equal to the key of its ``dvc.lock`` entry);
the parent run gets ``dvc_lock_hash`` when the pipeline ends (``ncsn.tracking.provenance``). With these
and the ``params.yaml`` artifact any run can be brought back (README, "Bringing a run back").

Privacy. Nothing secret is logged: a parameter whose name looks like a credential, or whose
value contains the value of an environment variable whose name does (``*TOKEN*``,
``*PASSWORD*``, ``*SECRET*``, ``*KEY*``, ...), or a URL's ``user:password@`` part, is logged
as ``[redacted]`` (``ncsn.tracking.redaction``). MLflow's usage telemetry is switched off in this process and its children
(``MLFLOW_DISABLE_TELEMETRY=true`` unless the environment already says otherwise).

With ``tracking.enabled: false`` both context managers yield a :class:`NullTracker` and MLflow
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

from ncsn.config import Config, ConfigError
from ncsn.tracking.failover import (CONTINUES_TAG, FAILOVER_ENV, FAILOVER_FROM_TAG, SERVER_PARENT_TAG, failed_over,
                                    is_remote, limit_http_retries, one_line, probe, switch_to_local, unavailable)
from ncsn.tracking.liveness import close_orphans, process_tags
from ncsn.tracking.provenance import LOCK, dvc_root, lock_hash, run_tags
from ncsn.tracking.redaction import redact
from ncsn.tracking.trackers import Fallback, NullTracker, Tracker

log = logging.getLogger(__name__)

PARENT_ENV = "NCSN_MLFLOW_PARENT_RUN_ID"
STAGE_TAG = "ncsn.stage"
PARAMS_ARTIFACT = "params.yaml"
ERROR_TAG = "ncsn.error"  # a failed run: the error's one line


# ----------------------------------------------------------------------------- where runs go


def tracking_uri(cfg: Config) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<abs paths.mlflow>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or _default_uri(cfg)


def _default_uri(cfg: Config) -> str:
    return f"sqlite:///{(Path(cfg.paths.mlflow).resolve() / 'mlflow.db').as_posix()}"


def quiet_mlflow() -> None:
    """Telemetry off (before MLflow is imported, and again if it already was); INFO logs off."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow  # noqa: F401  (reads the switch at import)

    try:
        from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client
        from mlflow.telemetry.utils import is_telemetry_disabled

        if get_telemetry_client() is not None and is_telemetry_disabled():
            set_telemetry_client()  # imported before the switch was set: drop the client
    except ImportError:  # an MLflow without telemetry
        pass
    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..."
        logging.getLogger(name).setLevel(logging.WARNING)


def connect(cfg: Config) -> str:
    """Point MLflow (tracking and registry) at the store of ``cfg``; return its URI."""
    quiet_mlflow()
    limit_http_retries()
    import mlflow

    uri = tracking_uri(cfg)
    if uri == _default_uri(cfg):
        Path(cfg.paths.mlflow).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def configure(cfg: Config) -> str:
    """:func:`connect`, and make sure the experiment ``tracking.experiment`` exists.

    A new experiment in an SQLite store (the embedded one, or a ``sqlite:///`` URI in
    ``MLFLOW_TRACKING_URI``) keeps its artifacts in ``artifacts/`` beside the database file, not in
    the working directory (a ``dvc exp run --queue`` runs in a temporary copy); on a server the
    server decides.

    :return: the experiment id.
    :raises ConfigError: when the experiment exists but was deleted.
    """
    uri = connect(cfg)
    from mlflow import MlflowClient

    return ensure_experiment(MlflowClient(), cfg.tracking.experiment, uri)


def ensure_experiment(client, name: str, uri: str) -> str:
    """The id of experiment ``name`` in the store ``uri`` of ``client``, created if missing (see :func:`configure`)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///"):]).resolve().parent / "artifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(f"params.yaml: 'tracking.experiment' = {name!r} names a deleted MLflow experiment in {uri};"
                          f" restore it (mlflow experiments restore --experiment-id {experiment.experiment_id})"
                          " or choose another name.")
    return experiment.experiment_id


_probed: dict[str, str | None] = {}


def preflight(cfg: Config) -> tuple[str, str | None]:
    """``(tracking URI, None)`` when runs can go there, else ``(URI, the error's one line)``.

    Only a server is asked (once per process, in at most a few seconds:
    ``ncsn.tracking.failover.probe``); a local store always can.
    """
    connect(cfg)
    uri = tracking_uri(cfg)
    if not is_remote(uri):
        return uri, None
    if uri not in _probed:
        _probed[uri] = probe(uri, cfg.tracking.experiment)
    return uri, _probed[uri]


def local_uri(cfg: Config) -> str:
    """The embedded store of ``cfg`` (where runs go when the server is lost)."""
    Path(cfg.paths.mlflow).mkdir(parents=True, exist_ok=True)
    return _default_uri(cfg)


# ----------------------------------------------------------------------------- runs


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
def _run(cfg: Config, name: str, parent_id: str | None, tags: dict[str, str],
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
    with _run(cfg, stage, os.environ.get(PARENT_ENV) or None, tags, Path(params_file)) as tracker:
        yield tracker


@contextlib.contextmanager
def pipeline_run(cfg: Config, repo: str | Path | None = None) -> Iterator[Tracker | NullTracker]:
    """The parent run of one pipeline execution in the repository ``repo`` (default: the working
    directory's).

    While open, ``NCSN_MLFLOW_PARENT_RUN_ID`` (its id) and ``MLFLOW_TRACKING_URI`` (its store)
    are set in ``os.environ`` for the stages' child processes; both are restored afterwards.
    Tagged like a stage run (without a stage hash); logs ``repo/params.yaml`` at the start, and
    ``dvc.lock`` with the tag ``dvc_lock_hash`` (``ncsn.tracking.provenance.lock_hash``) at the end.
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    saved = {key: os.environ.get(key) for key in (PARENT_ENV, "MLFLOW_TRACKING_URI", FAILOVER_ENV)}
    root = Path(repo) if repo is not None else (dvc_root() or Path.cwd())
    tags = run_tags(root, cfg.base.dataset, cfg.profile)
    with _run(cfg, "pipeline", None, tags, root / "params.yaml") as tracker:
        os.environ[PARENT_ENV] = tracker.run_id
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(cfg)
        try:
            yield tracker
        finally:
            _log_lock(tracker, root)
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
    local = _default_uri(cfg)
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
