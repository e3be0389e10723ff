"""What a stage logs through: :class:`Tracker` (one MLflow run) or :class:`NullTracker` (tracking off).

Both have the same methods, so a stage logs the same way whether tracking is on or off.

Failover. A :class:`Tracker` of a run on a tracking server keeps a journal of what it logged
(parameters, metrics with their steps and timestamps, tags, texts, artifacts). When a call
fails because the server cannot be reached (``ncsn.tracking.failover.unavailable``), it opens a
run in the local store that continues the server's run (tag ``ncsn.tracking.continues``),
replays the journal into it, and goes on there: the stage never fails for it, and
``ncsn tracking sync`` later brings the server's run up to date from the local one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ncsn.tracking.failover import one_line, probe, switch_to_local, unavailable
from ncsn.tracking.redaction import clip, redact, secret_values

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH


@dataclasses.dataclass(frozen=True)
class Fallback:
    """Where a server run goes on when the server is lost.

    :param server: the server's URI; ``local``: the local store's.
    :param open_local: ``open_local(server_run_id) -> (client, run_id)`` of a new local run that
        continues it.
    """

    server: str
    local: str
    open_local: Callable[[str], tuple[Any, str]]


class Tracker:
    """Logs into one MLflow run (``run_id``) through ``client``; fails over to ``fallback`` (see module docstring)."""

    def __init__(self, run_id: str, client=None, fallback: Fallback | None = None) -> None:
        from mlflow import MlflowClient

        self.run_id: str | None = run_id
        self.client = client or MlflowClient()
        self._fallback = fallback
        self._journal: list[tuple[str, Any]] = []

    # ------------------------------------------------------------------ what a stage calls

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters, redacting secrets and clipping values to MLflow's length limit."""
        from mlflow.entities import Param

        secrets = secret_values()
        self._record("params", [Param(k, clip(str(redact(k, v, secrets)), MAX_PARAM_LENGTH)) for k, v in params.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numbers (NaN and infinities included) at ``step`` (0 when None)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._record("metrics", [Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file, or a folder's content, into the run's artifacts (under ``artifact_path``).

        :raises FileNotFoundError: when ``path`` does not exist.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"cannot log artifact {path}: not found")
        self._record("artifact", (str(path), artifact_path))

    def log_text(self, text: str, name: str) -> None:
        """``text`` as the artifact file ``name``."""
        self._record("text", (text, name))

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values as strings; secrets redacted)."""
        from mlflow.entities import RunTag

        secrets = secret_values()
        self._record("tags", [RunTag(k, clip(str(redact(k, v, secrets)), MAX_TAG_LENGTH)) for k, v in tags.items()])

    def call(self, fn: Callable[[Any, str], Any]) -> Any:
        """``fn(client, run_id)`` on the current store; run again on the local one if the server is lost meanwhile."""
        try:
            return fn(self.client, self.run_id)
        except Exception as err:
            if self._fallback is None or not unavailable(err):
                raise
            self.fail_over(one_line(err))
        return fn(self.client, self.run_id)

    # ------------------------------------------------------------------ the run's life

    def check_server(self) -> None:
        """Fail over now if the server no longer answers (a cheap call, bounded by a few seconds)."""
        if self._fallback is not None and (reason := probe(self._fallback.server)) is not None:
            self.fail_over(reason)

    def end(self, status: str) -> None:
        """End the run with ``status`` (FINISHED, FAILED, KILLED), in the local store if the server is lost."""
        import mlflow

        active = mlflow.active_run()
        try:
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status)
            else:
                self.client.set_terminated(self.run_id, status)
            return
        except Exception as err:
            if self._fallback is None or not unavailable(err):
                raise
            self.fail_over(one_line(err))
        self.client.set_terminated(self.run_id, status)

    def fail_over(self, reason: str) -> None:
        """Go on in a local run that continues this one: the journal is replayed into it."""
        import mlflow

        fallback, self._fallback = self._fallback, None
        assert fallback is not None, "fail_over needs a fallback"
        switch_to_local(fallback.server, fallback.local, reason)
        old = self.run_id
        self.client, self.run_id = fallback.open_local(old)
        for op, payload in self._journal:
            try:
                self._send(op, payload)
            except FileNotFoundError as err:  # an artifact removed since: the rest still counts
                log.warning("not replayed into the local run: %s", one_line(err))
        active = mlflow.active_run()
        if active is not None and active.info.run_id == old:  # the fluent API follows (ncsn.reporting reads it)
            try:
                mlflow.end_run()  # pops the server run; ending it in the local store fails, and needs not succeed
            except Exception:  # noqa: BLE001
                pass
            mlflow.start_run(run_id=self.run_id, nested=mlflow.active_run() is not None)

    # ------------------------------------------------------------------ plumbing

    def _record(self, op: str, payload: Any) -> None:
        self._journal.append((op, payload))
        if self._fallback is None:
            self._send(op, payload)
            return
        try:
            self._send(op, payload)
        except Exception as err:
            if not unavailable(err):
                raise
            self.fail_over(one_line(err))  # replays the journal, this call included

    def _send(self, op: str, payload: Any) -> None:
        client, run_id = self.client, self.run_id
        if op == "params":
            for start in range(0, len(payload), 100):  # MLflow's limit per batch
                client.log_batch(run_id, params=payload[start:start + 100])
        elif op == "metrics":
            for start in range(0, len(payload), 1000):
                client.log_batch(run_id, metrics=payload[start:start + 1000])
        elif op == "tags":
            for start in range(0, len(payload), 100):
                client.log_batch(run_id, tags=payload[start:start + 100])
        elif op == "text":
            client.log_text(run_id, *payload)
        elif op == "artifact":
            path, artifact_path = payload
            if Path(path).is_dir():
                client.log_artifacts(run_id, path, artifact_path)
            elif Path(path).is_file():
                client.log_artifact(run_id, path, artifact_path)
            else:
                raise FileNotFoundError(f"cannot log artifact {path}: not found")
        else:
            raise AssertionError(f"unknown tracking call {op!r}")


class NullTracker:
    """The tracker when ``tracking.enabled`` is false: every method does nothing."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass
