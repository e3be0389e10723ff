"""One stage of the pipeline: ``dvc repro --single-item STAGE`` in a subprocess, its output streamed,
its failure a :class:`StageFailed` that says whether running it again may succeed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable, Sequence

_STATUS = re.compile(r"exited with (-?\d+)")  # DVC's StageCmdFailedError message
_LOCKED = "Unable to acquire lock"  # DVC's LockError: another dvc process holds the repo
# A stage command killed by one of these was most likely stopped from outside (the OOM
# killer, a preempted machine): running it again may succeed. Seen as -N or as 128 + N.
_KILLED = {int(signal.SIGKILL), int(signal.SIGTERM)}
STOP_GRACE_S = 60.0  # how long an interrupted stage may take to end its run and exit


class StageFailed(RuntimeError):
    """``dvc repro`` of one stage failed.

    :param stage: the stage's name (its DVC address).
    :param returncode: the exit code of ``dvc repro``.
    :param status: the exit status of the stage's command when DVC reports one, else None.
    :param tail: the last lines of the output.
    """

    def __init__(self, stage: str, returncode: int, status: int | None = None, tail: Sequence[str] = ()):
        self.stage, self.returncode, self.status, self.tail = stage, returncode, status, list(tail)
        detail = f"; its command exited with {status}" if status is not None else ""
        super().__init__(f"stage '{stage}' failed: dvc repro exited with {returncode}{detail}")

    def __reduce__(self):  # pickled in Prefect states: rebuild from the fields, not the message
        return type(self), (self.stage, self.returncode, self.status, self.tail)

    @property
    def transient(self) -> bool:
        """Whether running the stage again may succeed: killed from outside, or the repo was locked.

        A user error (``ncsn`` exits with 2) or a crash (exit 1) fails the same way again.
        """
        if self.status is not None:
            return -self.status in _KILLED or self.status - 128 in _KILLED
        return any(_LOCKED in line for line in self.tail)


def _stage_env() -> dict[str, str]:
    """The environment of a stage: this interpreter's bin dir first on PATH (the ``ncsn`` script)."""
    bin_dir = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    path = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p)
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}


def repro_stage(repo: Path, stage: str, *, wait_for_lock: bool = False) -> None:
    """Run ``dvc repro --single-item STAGE`` in ``repo``, streaming its output to stdout.

    DVC skips the stage when its deps, params and outs are unchanged. It holds the repository
    lock only to check, save and commit the stage, not while its command runs; ``wait_for_lock``
    (``dvc --wait-for-lock``) waits for a lock held by another ``dvc`` instead of failing after 3 s.

    :raises StageFailed: with the stage, dvc's exit code and the command's exit status.
    """
    lock = ["--wait-for-lock"] if wait_for_lock else []
    cmd = [sys.executable, "-m", "dvc", *lock, "repro", "--single-item", stage]
    tail: collections.deque[str] = collections.deque(maxlen=40)
    # Its own process group: Ctrl-C or SIGTERM reach this process only, which then stops the stage
    # (SIGINT to the group: DVC waits for its command, which ends its MLflow run KILLED) and waits for it.
    with subprocess.Popen(cmd, cwd=repo, env=_stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1, start_new_session=True) as proc:
        assert proc.stdout is not None
        try:
            _stream(proc.stdout, tail)
            returncode = proc.wait()
        except BaseException:
            # Stop the stage, and show what it says meanwhile (its run ended KILLED, a last error).
            reader = threading.Thread(target=_stream, args=(proc.stdout, tail), daemon=True)
            reader.start()
            _stop_group(proc)
            reader.join(timeout=5.0)
            raise
    if returncode != 0:
        statuses = [int(m.group(1)) for line in tail for m in _STATUS.finditer(line)]
        raise StageFailed(stage, returncode, statuses[-1] if statuses else None, tail)


def _stream(lines: Iterable[str], tail: collections.deque[str]) -> None:
    """Print each of ``lines`` as it comes, and keep the last ones in ``tail``."""
    for line in lines:
        print(line, end="", flush=True)
        tail.append(line.rstrip("\n"))


def _stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT the process group of ``proc`` and wait up to ``grace_s`` for it; then SIGKILL it."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
