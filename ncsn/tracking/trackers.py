"""What a stage logs through: :class:`Tracker` (one MLflow run) or :class:`NullTracker` (tracking off).

Both have the same four methods, so a stage logs the same way whether tracking is on or off.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ncsn.tracking.redaction import clip, redact, secret_values

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH


class Tracker:
    """Logs into one MLflow run (``run_id``), whichever run is active in MLflow's fluent API."""

    def __init__(self, run_id: str) -> None:
        from mlflow import MlflowClient

        self.run_id: str | None = run_id
        self._client = MlflowClient()

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters, redacting secrets and clipping values to MLflow's length limit."""
        from mlflow.entities import Param

        secrets = secret_values()
        items = [Param(k, clip(str(redact(k, v, secrets)), MAX_PARAM_LENGTH)) for k, v in params.items()]
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
        secrets = secret_values()
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, clip(str(redact(key, value, secrets)), MAX_TAG_LENGTH))


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
