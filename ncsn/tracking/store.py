"""Where MLflow runs go: the tracking store, its experiment, and a preflight of a server.

By default an embedded store that needs no server: the SQLite database
``<paths.mlflow>/mlflow.db`` with artifacts under ``<paths.mlflow>/artifacts`` (both absolute,
resolved from the working directory, i.e. the repository root where the stages run). MLflow
>= 3.13 refuses the old ``./mlruns`` folder store, hence SQLite. ``MLFLOW_TRACKING_URI`` in the
environment wins, for a real tracking server. Browse the embedded store, on this machine only::

    mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///outputs/mlflow/mlflow.db

Every store's experiment is tagged so that the UI opens it on its runs list (:data:`EXPERIMENT_TAGS`).

A server that is down, wrong or dies. :func:`preflight` asks it first (a few seconds at most); when
it cannot be reached the runs go on in the embedded store (:func:`local_uri`,
``ncsn.tracking.failover``).

A new SQLite store starts as a copy of an empty one made once per MLflow version
(``ncsn.tracking.store_seed``), not by running MLflow's migrations again.

MLflow's usage telemetry is switched off in this process and its children
(``MLFLOW_DISABLE_TELEMETRY=true`` unless the environment already says otherwise).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ncsn.config import Config, ConfigError
from ncsn.tracking.failover import is_remote, limit_http_retries, probe
from ncsn.tracking.store_seed import SQLITE_PREFIX, seed_sqlite_store

# MLflow 3 opens an experiment on the view its kind names; without the tag it guesses, and it
# opened ours on the GenAI overview (traces, "No data"). "custom_model_development" is the kind
# that the UI calls "Machine learning": it opens on the runs list.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_TAGS = {EXPERIMENT_KIND_TAG: "custom_model_development"}


def tracking_uri(cfg: Config) -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<abs paths.mlflow>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(cfg)


def embedded_uri(cfg: Config) -> str:
    """``sqlite:///<abs paths.mlflow>/mlflow.db``: the embedded store (the default, and the failover)."""
    return f"{SQLITE_PREFIX}{(Path(cfg.paths.mlflow).resolve() / 'mlflow.db').as_posix()}"


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
    if uri == embedded_uri(cfg):
        Path(cfg.paths.mlflow).mkdir(parents=True, exist_ok=True)
    seed_sqlite_store(uri)
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
    """The id of experiment ``name`` in the store ``uri`` of ``client``, created if missing (see :func:`configure`),
    tagged with :data:`EXPERIMENT_TAGS` (a kind already set, by a user say, is left as it is)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if uri.startswith(SQLITE_PREFIX):
            location = (Path(uri[len(SQLITE_PREFIX):]).resolve().parent / "artifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(f"params.yaml: 'tracking.experiment' = {name!r} names a deleted MLflow experiment in {uri};"
                          f" restore it (mlflow experiments restore --experiment-id {experiment.experiment_id})"
                          " or choose another name.")
    for key, value in EXPERIMENT_TAGS.items():  # an experiment made before the tag, or by someone else
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
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
    return embedded_uri(cfg)
