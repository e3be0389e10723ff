"""Fixtures shared by several test modules, and the grouping of tests under pytest-xdist."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Iterator

import pytest
import torch

from ncsn.tracking.failover import FAILOVER_ENV
from ncsn.tracking.runs import PARENT_ENV
from tests.smoke_fixtures import server_smoke_run  # noqa: F401  (one smoke pipeline per session)

# `make test` runs the suite on two pytest-xdist workers (-n 2 --dist loadgroup). A worker is one
# of two processes on a 2-core machine: one torch thread each, or their threads fight for the cores.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the subprocesses of the tests too

# Under `--dist loadgroup` a work unit runs on one worker: a module (its module fixtures run once), or
# one of SHARED_WORKER's groups of modules that read one session fixture (a session fixture runs
# once per worker). xdist's own xdist_group marks do not group with pytest 9.2
# (pytest-dev/pytest-xdist#1386), so the scheduler below groups by module path.
SHARED_WORKER = {
    "server_smoke_run": ("tests/pipeline/test_dvc_remote.py", "tests/pipeline/test_reproduce.py",
                         "tests/tracking/test_mlflow_server.py"),  # tests.smoke_fixtures: one smoke pipeline
    "classifier": ("tests/evaluation/test_classifier_metrics.py",
                   "tests/evaluation/test_inception.py"),  # tests/evaluation/conftest.py: trained once
}
UNIT_OF_MODULE = {module: unit for unit, modules in SHARED_WORKER.items() for module in modules}
# The longest units first, so that neither worker is left with a long one at the end; the rest
# follow in collection order.
SLOW_FIRST = (
    "tests/pipeline/test_tracking_failover.py",  # smoke pipelines against real and killed servers
    "tests/pipeline/test_queue.py",  # two queued `dvc exp run` smoke experiments
    "server_smoke_run",
    "tests/pipeline/test_prefect_server.py",  # a Prefect worker runs the smoke pipeline
    "tests/pipeline/test_end_to_end.py",  # `dvc repro` of the smoke pipeline
    "tests/pipeline/test_folder_pipeline.py",  # a folder of RGB images through the smoke pipeline, twice
    "classifier",  # trains the cpu profile's classifier
    "tests/stages/test_train.py",
    "tests/stages/test_generate.py",
    "tests/pipeline/test_flows.py",
    "tests/pipeline/test_gpu_check.py",
    "tests/figures/test_figures.py",
    "tests/stages/test_distributed_sampling.py",
    "tests/tracking/test_crash_registry.py",
    "tests/stages/test_crash_sampling.py",
)


def _unit(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    return UNIT_OF_MODULE.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: warn about a module that reads a SHARED_WORKER fixture but is not listed."""
    if not XDIST_WORKER:
        return
    for item in items:
        for fixture in set(SHARED_WORKER) & set(getattr(item, "fixturenames", ())):
            if _unit(item.nodeid) != fixture:
                warnings.warn(pytest.PytestWarning(
                    f"{item.nodeid.split('::')[0]} uses {fixture} but is not in SHARED_WORKER['{fixture}'] "
                    "(tests/conftest.py): under xdist its worker runs that session fixture again"))
                return


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without the plugin
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` with the units above, SLOW_FIRST first, and no unit taken ahead.

    xdist's own loadgroup makes each test a unit (a module fixture would run on both workers),
    orders units by their number of tests, and gives a worker its next unit while two tests of its
    current one are still to run: one worker could hold two long units while the other has none.
    Here a worker gets its next unit when one test of its current unit is left.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class UnitScheduling(LoadGroupScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:  # the first assignment: order the queue, SLOW_FIRST first
                rank = {unit: i for i, unit in enumerate(SLOW_FIRST)}
                first: dict[str, int] = {}
                for i, nodeid in enumerate(self.collection):
                    first.setdefault(_unit(nodeid), i)
                units = sorted(self.workqueue, key=lambda unit: (rank.get(unit, len(rank)), first[unit]))
                self.workqueue = type(self.workqueue)((unit, self.workqueue[unit]) for unit in units)
                self.ordered = True
            super()._assign_work_unit(node)

        def _reschedule(self, node) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return UnitScheduling(config, log)


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
    """An initialised, empty MLflow SQLite database to copy (``ncsn.tracking.store_seed``: migrated once)."""
    from ncsn.tracking.store_seed import seed_sqlite_store

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{path}")
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
