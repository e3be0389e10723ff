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
exception, KILLED on Ctrl-C.

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
from ncsn.tracking.provenance import LOCK, dvc_root, lock_hash, run_tags
from ncsn.tracking.redaction import redact
from ncsn.tracking.trackers import NullTracker, Tracker

log = logging.getLogger(__name__)

PARENT_ENV = "NCSN_MLFLOW_PARENT_RUN_ID"
STAGE_TAG = "ncsn.stage"
PARAMS_ARTIFACT = "params.yaml"


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
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(), cfg.tracking.experiment
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
    tracker._client.log_text(tracker.run_id, text, PARAMS_ARTIFACT)


@contextlib.contextmanager
def _run(cfg: Config, name: str, parent_id: str | None, tags: dict[str, str],
         params_file: Path) -> Iterator[Tracker]:
    """An MLflow run named ``name`` (tag ``ncsn.stage``, and ``tags``), with the config and
    ``params_file`` logged; ended with its status."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    experiment_id = configure(cfg)
    active = mlflow.active_run()
    if active is not None:  # in-process parent (tests, notebooks): nest under it
        parent_id = active.info.run_id
    elif parent_id:
        try:
            parent = MlflowClient().get_run(parent_id)
            experiment_id = parent.info.experiment_id  # a child must live in its parent's experiment
        except MlflowException as err:
            log.warning("%s=%s is not a run in %s (%s); starting a top-level run",
                        PARENT_ENV, parent_id, tracking_uri(cfg), str(err).splitlines()[0])
            parent_id = None
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=active is not None,
                           parent_run_id=parent_id, tags={STAGE_TAG: name})
    try:
        tracker = Tracker(run.info.run_id)
        tracker.set_tags(tags)
        tracker.log_params(cfg.flat())
        tracker._client.log_text(tracker.run_id, yaml.safe_dump(redact("config", cfg.to_dict()), sort_keys=False),
                                 "config.yaml")
        _log_params_file(tracker, params_file)
        yield tracker
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


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
    saved = {key: os.environ.get(key) for key in (PARENT_ENV, "MLFLOW_TRACKING_URI")}
    uri = tracking_uri(cfg)
    root = Path(repo) if repo is not None else (dvc_root() or Path.cwd())
    tags = run_tags(root, cfg.base.dataset, cfg.profile)
    with _run(cfg, "pipeline", None, tags, root / "params.yaml") as tracker:
        os.environ[PARENT_ENV] = tracker.run_id
        os.environ["MLFLOW_TRACKING_URI"] = uri
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
        log.warning("cannot log %s: %s", lock, str(err).splitlines()[0] if str(err) else type(err).__name__)
