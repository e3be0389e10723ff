"""Registration survives SIGKILL: no half-registered version, no champion without its files.

A real subprocess (``tests/registry_worker.py``) registers a series of checkpoints, each better
than the last, into an embedded SQLite store and is killed with SIGKILL, either after a random
delay (several seeds) or right after a chosen step of ``register_and_promote``. Afterwards every
version has its files, the champion alias names a version that downloads and loads, and a rerun
registers and promotes cleanly. The last test kills the whole ``ncsn evaluate`` stage (2-D mixture,
registration on) while it works: the rerun's outputs equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ncsn.storage.checkpoint import FORMAT, atomic_save, file_sha256
from ncsn.config import Config
from ncsn.storage.score_model import load_score_model
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.core.sigmas import geometric_sigmas
from ncsn.tracking.runs import PARENT_ENV, stage_run
from tests.helpers import REPO, ncsn_command, write_params
from tests.registry_worker import KILL_POINTS, worker_config

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from ncsn.tracking.registered_model import files_problem  # noqa: E402
from ncsn.tracking.registry import register_and_promote, resolve_model_uri  # noqa: E402

NAME = "ncsn-mnist5k"
pytestmark = pytest.mark.usefixtures("single_thread")  # in-process evaluations must match each other
N_CHECKPOINTS = 4
ROUNDS = 10  # 40 registrations: ~0.1 s each once the first is done; the kill comes within 2.5 s


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Small real checkpoints (smoke U-Net, 1x8x8) to register."""
    root = tmp_path_factory.mktemp("checkpoints")
    cfg = worker_config(root)
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    paths = []
    for step in range(N_CHECKPOINTS + 1):
        torch.manual_seed(step)
        net = build_model(**network_args(cfg.model), channels=1, image_size=8, sigmas=sigmas)
        path = root / f"model{step}.pt"
        atomic_save({"format": FORMAT, "step": step, "config": cfg.to_dict(), "sigmas": sigmas,
                     "data": {"dataset": "mnist5k", "channels": 1, "image_size": 8},
                     "model": net.state_dict(), "ema": None}, path)
        paths.append(path)
    return paths


@pytest.fixture
def cfg(mlflow_dir: Path) -> Config:
    """The worker's configuration, its store a fresh copy of an initialised database."""
    return worker_config(mlflow_dir)


def _start(cfg: Config, checkpoints: list[Path], *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", PARENT_ENV)}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tests.registry_worker", cfg.paths.mlflow, *map(str, checkpoints), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _check_store(cfg: Config, checkpoints: list[Path], name: str = NAME) -> int:
    """The invariants after a crash; returns the number of versions."""
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(cfg.paths.mlflow) / 'mlflow.db'}")
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    assert versions == list(range(1, len(versions) + 1))
    for version in versions:  # no half-registered version: every one is READY with its files
        assert client.get_model_version(name, str(version)).status == "READY"
        assert files_problem(client, name, str(version)) is None, version
    try:
        champion = int(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None:
        assert len(versions) <= 1  # only a first version whose promotion was cut short
        return len(versions)
    # Every version beats the last, so the alias is on the newest, or one behind when the kill fell
    # between creating a version and moving the alias.
    assert champion in versions[-2:]
    model = load_score_model(resolve_model_uri(f"models:/{name}@champion", cfg))
    by_hash = {file_sha256(path): path for path in checkpoints}
    expected = load_score_model(by_hash[client.get_model_version(name, str(champion)).tags["checkpoint_sha256"]])
    assert model.checkpoint["step"] == expected.checkpoint["step"]
    for key, value in expected.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value), key
    return len(versions)


def _rerun_registers_cleanly(cfg: Config, checkpoints: list[Path], n_versions: int) -> None:
    with stage_run(cfg, "evaluate") as tracker:
        result = register_and_promote(cfg, tracker, checkpoints[-1], {"classifier_fid": 1.0, "n_samples": 32})
    assert result["version"] == str(n_versions + 1) and result["promoted"], result
    assert _check_store(cfg, checkpoints) == n_versions + 1
    path = resolve_model_uri(f"models:/{NAME}@champion", cfg)
    assert load_score_model(path).checkpoint["step"] == len(checkpoints) - 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_moment_of_registration(seed: int, cfg: Config, checkpoints: list[Path]) -> None:
    proc = _start(cfg, checkpoints[:N_CHECKPOINTS], "--rounds", str(ROUNDS))
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.0, 2.5))
    assert proc.poll() is None, "the worker ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    n_versions = _check_store(cfg, checkpoints)
    assert n_versions < N_CHECKPOINTS * ROUNDS, n_versions
    print(f"seed {seed}: killed with {n_versions} version(s) registered")
    _rerun_registers_cleanly(cfg, checkpoints, n_versions)


@pytest.mark.parametrize("point", [p for p in KILL_POINTS if p != "set_registered_model_alias"])
def test_sigkill_right_after_a_step_of_registration(point: str, cfg: Config, checkpoints: list[Path]) -> None:
    """Killed in the second registration, right after ``point``: the first champion stays usable."""
    calls = {"copy_file": 4, "create_model_version": 2, "set_registered_model_alias": 2}[point]
    proc = _start(cfg, checkpoints[:3], "--die-at", f"{point}:{calls}")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    assert out.splitlines()[:2] == ["ready", "registered 1 True"] and len(out.splitlines()) == 2, out
    n_versions = _check_store(cfg, checkpoints)
    assert n_versions == (1 if point == "copy_file" else 2)
    _rerun_registers_cleanly(cfg, checkpoints, n_versions)


# ----------------------------------------------------------------------------- the evaluate stage

GMM = {"base": {"dataset": "gmm"}, "data": {"gmm_samples": 2000, "n_test": 200}}
EVALUATE_OUTPUTS = ["checkpoint_fid.csv", "metrics.json", "nearest_neighbours.png"]


@pytest.fixture(scope="module")
def gmm_outputs(tmp_path_factory: pytest.TempPathFactory, single_thread: None) -> Path:
    """prepare, train and sample of the 2-D mixture (in-process, tracking off), and an uninterrupted
    evaluation in ``outputs/evaluate`` to compare with."""
    from ncsn.cli import main

    root = tmp_path_factory.mktemp("gmm")
    params = write_params(root, GMM)
    for stage in ("prepare", "train", "sample", "evaluate"):
        assert main(["--params", str(params), stage]) == 0, stage
    return root / "outputs"


def _metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.pop("best_checkpoint_path")  # absolute path, differs between folders
    return metrics


def test_sigkill_during_evaluation_then_rerun_registers_and_matches(cfg: Config, tmp_path: Path,
                                                                    gmm_outputs: Path) -> None:
    """``ncsn evaluate`` (tracking and registration on) killed at a random moment of its work."""
    from ncsn.cli import main

    params = write_params(tmp_path, {**GMM, "tracking": {"enabled": True, "register": True, "experiment": "crash"},
                                     "paths": {"mlflow": cfg.paths.mlflow}})
    (tmp_path / "outputs").mkdir()
    for stage in ("prepare", "train", "sample"):
        (tmp_path / "outputs" / stage).symlink_to(gmm_outputs / stage)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", PARENT_ENV)}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(ncsn_command("--params", str(params), "evaluate"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "outputs" / "evaluate"
    deadline = time.monotonic() + 120
    while not list(out.glob(".fidelity-cache-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the work has begun once its feature cache exists
    time.sleep(random.Random(0).uniform(0.0, 1.5))
    assert proc.poll() is None, "evaluate ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    model = gmm_outputs / "train" / "model.pt"
    n_versions = _check_store(cfg, [model], name="ncsn-gmm")
    assert main(["--params", str(params), "evaluate"]) == 0
    assert sorted(p.name for p in out.iterdir()) == EVALUATE_OUTPUTS  # no cache or temporary file left
    assert _metrics(out) == _metrics(gmm_outputs / "evaluate")
    for name in ("checkpoint_fid.csv", "nearest_neighbours.png"):
        assert (out / name).read_bytes() == (gmm_outputs / "evaluate" / name).read_bytes(), name
    assert _check_store(cfg, [model], name="ncsn-gmm") == n_versions + 1
    # The rerun's version (same FID) is champion unless the killed run had already promoted its own.
    champion = MlflowClient().get_model_version_by_alias("ncsn-gmm", "champion")
    assert int(champion.version) in (n_versions, n_versions + 1) and int(champion.version) >= 1
