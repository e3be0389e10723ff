"""One smoke pipeline tracked into a real MLflow server, shared by the server and DVC-remote tests.

Each full smoke pipeline costs minutes on 2 cores, so the session runs this one once
(``server_smoke_run``, made available to every module by ``tests/conftest.py``): a temporary git
copy of the repository runs ``ncsn pipeline -S profile=smoke`` with ``MLFLOW_TRACKING_URI`` set to
an ``mlflow server`` started for the session (``tests.mlflow_server``) and stopped at its end.
Under pytest-xdist a session fixture runs once per worker: the modules that use it are listed in
``SHARED_WORKER`` (``tests/conftest.py``), and ``--dist loadgroup`` runs them all on one worker.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import copy_repository, repo_env
from tests.mlflow_server import mlflow_server

PIPELINE_TIMEOUT_S = 1200


@dataclasses.dataclass(frozen=True)
class ServerSmokeRun:
    """``repo``: the git copy that ran the pipeline; ``uri``: the server; ``server_root``: its
    database, artifacts and log; ``output``: the pipeline's stdout; ``seconds``: its wall time."""

    repo: Path
    uri: str
    server_root: Path
    output: str
    seconds: float

    def env(self) -> dict[str, str]:
        """The environment of a command run in ``repo`` against the server."""
        return repo_env(self.repo) | {"MLFLOW_TRACKING_URI": self.uri}


@pytest.fixture(scope="session")
def server_smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSmokeRun]:
    """The smoke pipeline, run once against a real MLflow server that lives for the session."""
    root = tmp_path_factory.mktemp("server_smoke")
    repo = root / "ncsn"
    repo.mkdir()
    copy_repository(repo)
    with mlflow_server(root / "server") as uri:
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "ncsn", "pipeline", "-S", "profile=smoke"], cwd=repo,
                                env=repo_env(repo) | {"MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                                timeout=PIPELINE_TIMEOUT_S)
        seconds = time.monotonic() - start
        assert result.returncode == 0, f"ncsn pipeline failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        print(f"smoke pipeline against {uri}: {seconds:.0f} s")
        yield ServerSmokeRun(repo, uri, root / "server", result.stdout, seconds)
