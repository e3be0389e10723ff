"""MLflow tracking: one run per stage, nested under one parent run per pipeline execution.

Where runs go. By default an embedded store that needs no server: the SQLite database
``<paths.mlflow>/mlflow.db`` with artifacts under ``<paths.mlflow>/artifacts`` (both absolute,
resolved from the working directory, i.e. the repository root where the stages run). MLflow
>= 3.13 refuses the old ``./mlruns`` folder store, hence SQLite. ``MLFLOW_TRACKING_URI`` in the
environment wins, for a real tracking server. Browse the embedded store, on this machine only::

    mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///outputs/mlflow/mlflow.db

Runs. ``stage_run(cfg, stage)`` opens the run of one stage (name and tag ``ncsn.stage`` = the
stage) and logs the whole resolved configuration: every value of ``cfg.flat()`` as a parameter
and ``config.yaml`` as an artifact. ``pipeline_run(cfg)`` opens the parent run of one pipeline
execution and exports its id as ``NCSN_MLFLOW_PARENT_RUN_ID`` (and the store as
``MLFLOW_TRACKING_URI``) so the stage runs that ``dvc repro`` starts in child processes nest
under it. A run ends FINISHED, FAILED on an exception, KILLED on Ctrl-C.

Privacy. Nothing secret is logged: a parameter whose name looks like a credential, or whose
value contains the value of an environment variable whose name does (``*TOKEN*``,
``*PASSWORD*``, ``*SECRET*``, ``*KEY*``, ...), or a URL's ``user:password@`` part, is logged
as ``[redacted]``. MLflow's usage telemetry is switched off in this process and its children
(``MLFLOW_DISABLE_TELEMETRY=true`` unless the environment already says otherwise).

With ``tracking.enabled: false`` both context managers yield a :class:`NullTracker` and MLflow
is not imported.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from ncsn.config import Config, ConfigError

log = logging.getLogger(__name__)

PARENT_ENV = "NCSN_MLFLOW_PARENT_RUN_ID"
STAGE_TAG = "ncsn.stage"
REDACTED = "[redacted]"
MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
SIGMAS_PARAM_LENGTH = 500  # longer schedules are shortened in the parameter (the CSV has them all)

_SECRET_NAME = re.compile(r"token|passw|secret|credential|auth|key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_MIN_SECRET_LENGTH = 6  # shorter environment values ("1", "true") would redact everything


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

    A new experiment in the embedded store keeps its artifacts in ``<paths.mlflow>/artifacts``;
    on a server the server decides.

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
        if uri == _default_uri(cfg):
            location = (Path(cfg.paths.mlflow).resolve() / "artifacts").as_uri()
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


# ----------------------------------------------------------------------------- secrets


def _secret_values() -> list[str]:
    """Values of environment variables whose names look like credentials, longest first."""
    values = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(key: str, value: Any, secrets: list[str] | None = None) -> Any:
    """``value``, or ``[redacted]`` when ``key`` or ``value`` looks secret (see module docstring)."""
    secrets = _secret_values() if secrets is None else secrets
    if _SECRET_NAME.search(key.rsplit(".", 1)[-1]) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        text = _URL_USERINFO.sub(f"{REDACTED}@", value)
        return REDACTED if any(s in text for s in secrets) else text
    if isinstance(value, (list, tuple)):
        return type(value)(redact(key, v, secrets) for v in value)
    if isinstance(value, dict):
        return {k: redact(k, v, secrets) for k, v in value.items()}
    return value


def _clip(text: str, limit: int) -> str:
    suffix = "...[truncated]"
    return text if len(text) <= limit else text[: limit - len(suffix)] + suffix


# ----------------------------------------------------------------------------- trackers


class Tracker:
    """Logs into one MLflow run (``run_id``), whichever run is active in MLflow's fluent API."""

    def __init__(self, run_id: str) -> None:
        from mlflow import MlflowClient

        self.run_id: str | None = run_id
        self._client = MlflowClient()

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters, redacting secrets and clipping values to MLflow's length limit."""
        from mlflow.entities import Param

        secrets = _secret_values()
        items = [Param(k, _clip(str(redact(k, v, secrets)), MAX_PARAM_LENGTH)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit per batch
            self._client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numbers (NaN and infinities included) at ``step`` (0 when None)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file, or a folder's content, into the run's artifacts (under ``artifact_path``).

        :raises FileNotFoundError: when ``path`` does not exist.
        """
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log artifact {path}: not found")

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values as strings; secrets redacted)."""
        secrets = _secret_values()
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, _clip(str(redact(key, value, secrets)), MAX_TAG_LENGTH))


class NullTracker:
    """The tracker when ``tracking.enabled`` is false: every method does nothing."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass


# ----------------------------------------------------------------------------- runs


@contextlib.contextmanager
def _run(cfg: Config, name: str, parent_id: str | None) -> Iterator[Tracker]:
    """An MLflow run named ``name`` (tag ``ncsn.stage``), with the config logged; ended with its status."""
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
        tracker.log_params(cfg.flat())
        tracker._client.log_text(tracker.run_id, yaml.safe_dump(redact("config", cfg.to_dict()), sort_keys=False),
                                 "config.yaml")
        yield tracker
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


@contextlib.contextmanager
def stage_run(cfg: Config, stage: str) -> Iterator[Tracker | NullTracker]:
    """The MLflow run of one stage, nested under ``$NCSN_MLFLOW_PARENT_RUN_ID`` when set.

    Logs ``cfg.flat()`` as parameters and the resolved config as ``config.yaml`` (secrets
    redacted). Yields a :class:`NullTracker` when ``tracking.enabled`` is false.
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    with _run(cfg, stage, os.environ.get(PARENT_ENV) or None) as tracker:
        yield tracker


@contextlib.contextmanager
def pipeline_run(cfg: Config) -> Iterator[Tracker | NullTracker]:
    """The parent run of one pipeline execution.

    While open, ``NCSN_MLFLOW_PARENT_RUN_ID`` (its id) and ``MLFLOW_TRACKING_URI`` (its store)
    are set in ``os.environ`` for the stages' child processes; both are restored afterwards.
    """
    if not cfg.tracking.enabled:
        yield NullTracker()
        return
    saved = {key: os.environ.get(key) for key in (PARENT_ENV, "MLFLOW_TRACKING_URI")}
    uri = tracking_uri(cfg)
    with _run(cfg, "pipeline", None) as tracker:
        os.environ[PARENT_ENV] = tracker.run_id
        os.environ["MLFLOW_TRACKING_URI"] = uri
        try:
            yield tracker
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# ----------------------------------------------------------------------------- the noise levels


def _sigmas_param(values: list[float]) -> str:
    """``"1, 0.599, ..., 0.01"``; shortened to head and tail, saying so, past SIGMAS_PARAM_LENGTH."""
    text = ", ".join(f"{s:.6g}" for s in values)
    if len(text) <= SIGMAS_PARAM_LENGTH:
        return text
    k = 8
    head, tail = (", ".join(f"{s:.6g}" for s in part) for part in (values[:k], values[-k:]))
    return f"{head}, ..., {tail} [truncated: {2 * k} of {len(values)} levels shown; all in sigmas.csv]"


def log_sigma_schedule(tracker: Tracker | NullTracker, sigmas: torch.Tensor, out_dir: Path) -> None:
    """Log the noise levels σ_1 > ... > σ_L three ways: parameter, CSV and log-scale plot.

    Parameters ``sigmas`` (comma-separated; head and tail only, marked ``[truncated: ...]``, when
    long), ``sigmas.num_levels``, ``sigmas.begin``, ``sigmas.end``; artifacts
    ``sigma_schedule/sigmas.csv`` (``level,sigma``; the train stage's file when it is there) and
    ``sigma_schedule/sigmas.png``, both written to ``out_dir``.

    :param sigmas: [L] descending noise levels.
    """
    assert sigmas.ndim == 1 and len(sigmas) > 0, f"expected [L] noise levels, got shape {tuple(sigmas.shape)}"
    values = [float(s) for s in sigmas.detach().cpu().double()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "sigmas.csv", out_dir / "sigmas.png"
    if not csv_path.is_file():  # ncsn.train writes it in the train stage
        with csv_path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["level", "sigma"])
            writer.writerows([i, f"{s:.8g}"] for i, s in enumerate(values))
    _plot_sigmas(values, png_path)
    tracker.log_params({"sigmas": _sigmas_param(values), "sigmas.num_levels": len(values),
                        "sigmas.begin": f"{values[0]:.6g}", "sigmas.end": f"{values[-1]:.6g}"})
    tracker.log_artifact(csv_path, "sigma_schedule")
    tracker.log_artifact(png_path, "sigma_schedule")


def _plot_sigmas(values: list[float], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(len(values)), values, marker="o", markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("level i (0 = largest)")
    ax.set_ylabel("σ_i")
    ratio = (values[-1] / values[0]) ** (1 / (len(values) - 1)) if len(values) > 1 else math.nan
    ax.set_title(f"{len(values)} noise levels, σ_(i+1)/σ_i = {ratio:.3g}")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
