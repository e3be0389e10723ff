"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
import torch

from ncsn.tracking.failover import FAILOVER_ENV
from ncsn.tracking.runs import PARENT_ENV
from tests.smoke_fixtures import server_smoke_run  # noqa: F401  (one smoke pipeline per session)


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Thousands of tiny steps: one intra-op thread is faster, and robust to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mnist5k splits of the smoke params, prepared once per test session (``outputs/prepare``).

    Read-only: tests link it into their own folder with ``tests.helpers.link_prepared``.
    """
    from ncsn.cli import main
    from tests.helpers import write_params

    root = tmp_path_factory.mktemp("prepared")
    assert main(["--params", str(write_params(root)), "prepare"]) == 0
    return root / "outputs" / "prepare"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """A folder whose ``outputs/train`` holds the smoke profile's trained U-Net, trained once per session.

    Read-only: its ``params.yaml`` points every stage's outputs into the folder.
    """
    from ncsn.cli import main
    from tests.helpers import link_prepared, write_params

    root = tmp_path_factory.mktemp("trained")
    link_prepared(root, prepared)
    assert main(["--params", str(write_params(root)), "train"]) == 0
    return root


@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite database to copy (schema migrations run once per module)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> Path:
    """``tmp_path/mlflow`` holding a fresh embedded store; MLflow's process-wide URI and env restored."""
    from mlflow.tracking._tracking_service import utils

    for name in ("MLFLOW_TRACKING_URI", PARENT_ENV, FAILOVER_ENV):
        monkeypatch.setenv(name, "placeholder")  # so that teardown restores the original state
        monkeypatch.delenv(name)
    monkeypatch.setattr(utils, "_tracking_uri", None)
    (tmp_path / "mlflow").mkdir()
    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow" / "mlflow.db")
    return tmp_path / "mlflow"
