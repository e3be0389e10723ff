"""A real ``mlflow server`` on 127.0.0.1 for tests: SQLite backend and proxied artifacts in a folder.

``mlflow_server(root)`` starts ``mlflow server --serve-artifacts`` on a free port, its database
(``root/server.db``), artifacts (``root/artifacts``) and log (``root/server.log``) under ``root``,
waits for ``/health`` and yields the tracking URI; the server's process group is stopped on exit,
whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

STARTUP_TIMEOUT_S = 180.0  # the server imports a lot; the 2 cores may be busy
_RUNNING: dict[str, subprocess.Popen] = {}  # uri -> the server's process, while mlflow_server() runs it


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it runs in its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """Run ``mlflow server`` with its store under ``root``; yield ``http://127.0.0.1:PORT``.

    :raises AssertionError: when the server exits or is not healthy within STARTUP_TIMEOUT_S
        (with the tail of its log).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # No job execution: the tests run no MLflow server jobs, and its runner is eight more processes
    # (huey consumers importing mlflow), some 40 s of CPU at start and more while the session lasts.
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")]
    log_path = root / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _healthy(uri):
                assert proc.poll() is None, f"mlflow server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"mlflow server not healthy in {STARTUP_TIMEOUT_S:.0f} s:\n" \
                                                    f"{log_path.read_text()[-3000:]}"
                time.sleep(0.5)
            _RUNNING[uri] = proc
            yield uri
        finally:
            _RUNNING.pop(uri, None)
            _stop(proc)


def kill_server(uri: str) -> None:
    """SIGKILL the server at ``uri`` (started by :func:`mlflow_server`) and its workers, as a crash would."""
    proc = _RUNNING[uri]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
