"""A stage command that DVC runs stops on SIGINT even when it was started with SIGINT ignored.

``ncsn pipeline &`` in a shell script starts the pipeline, and so every stage under it, with
SIGINT ignored; the pipeline stops a running stage with SIGINT (``ncsn.stages.repro``), and the
stage must then end its MLflow run KILLED. A real process each: SIGINT ignored, then ``ncsn.cli.main``
with a stage that waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import REPO

# SIGINT ignored as a script's background job has it; a stage whose work is a long wait.
CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
import ncsn.cli as cli
def wait(args):
    print("ready", flush=True)
    time.sleep(30)
    return 0
cli._dispatch = wait
sys.exit(cli.main(["prepare"]))
"""


def _interrupted(env: dict[str, str]) -> int | None:
    """The exit code of the child after a SIGINT, or None when it was still running 5 s later."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("under_dvc", [True, False])
def test_a_stage_under_dvc_takes_sigint_back(under_dvc: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    if under_dvc:
        env["DVC_STAGE"] = "prepare"  # DVC sets it for every stage command
    code = _interrupted(env)
    if under_dvc:
        assert code == -signal.SIGINT  # a KeyboardInterrupt: the stage's run ends KILLED on its way out
    else:
        assert code is None  # anything else keeps the disposition it was given
