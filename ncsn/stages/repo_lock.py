"""One ``ncsn pipeline`` per repository at a time: an exclusive lock on ``.dvc/tmp/ncsn-pipeline.lock``.

Two pipelines in one repository would race on ``params.yaml``, ``dvc.lock`` and every output, and
DVC's own lock only makes the later one fail half-way. The lock is an ``flock`` on the file, so
the operating system releases it whatever way its holder ends (even SIGKILL): there is never a
stale lock to remove by hand. The holder writes its pid, host and start time into the file, so a
second pipeline can say who it waits for. ``dvc exp run --queue`` stays the way to line up several.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_FILE = Path(".dvc") / "tmp" / "ncsn-pipeline.lock"


class PipelineBusy(RuntimeError):
    """Another pipeline holds the repository (raised with ``wait=False``)."""


def _holder(path: Path) -> str:
    """"pid N on HOST, started T" from the lock file, or "unknown" when unreadable."""
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def pipeline_lock(repo: Path, *, wait: bool = True, say: Callable[[str], None] = print,
                  poll_s: float = 0.5) -> Iterator[None]:
    """Hold the repository's pipeline lock while the block runs.

    :param wait: when another pipeline holds it, wait for it (saying so once) instead of raising.
    :raises PipelineBusy: with the one line naming the holder, when ``wait`` is false and it is held.
    """
    path = repo / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            line = f"another ncsn pipeline is running in {repo} ({_holder(path)})"
            if not wait:
                raise PipelineBusy(f"{line}; not waiting (--no-wait)") from None
            say(f"ncsn pipeline: {line}; waiting for it to end")
            while True:  # polled, so that Ctrl-C and SIGTERM are served at once
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
