"""A DVC remote carries a trained model to a second clone, which reuses it instead of training.

The session's smoke pipeline (``tests.smoke_fixtures.server_smoke_run``) ran in a git copy of the
repository. Here that copy gets a local-folder remote (``dvc remote add -d``), pushes its cache and
run cache (``dvc push --run-cache``) and commits ``dvc.lock``. A ``git clone`` of it then runs
``dvc pull`` and ``dvc repro``: no stage runs (in particular no training step), and the pulled
model, checkpoints and samples are byte for byte the first machine's. Every output is either in
DVC's cache (the resumable checkpoints too) or, for the small uncached metrics and plots, in git.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ncsn.storage.checkpoint import file_sha256
from tests.helpers import repo_env

pytestmark = pytest.mark.slow
REUSED = ("outputs/train/model.pt", "outputs/sample/grid.png", "outputs/evaluate/nearest_neighbours.png")


def _run(*cmd: str, cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=repo_env(cwd), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _dvc(*args: str, cwd: Path) -> str:
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def _hashes(root: Path, folder: str) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (not the ``.gitignore`` files DVC writes beside its outputs)."""
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted((root / folder).rglob("*"))
            if p.is_file() and p.name != ".gitignore"}


def test_a_second_clone_pulls_and_reuses_train_and_sample(server_smoke_run, tmp_path: Path) -> None:
    first = tmp_path / "first"  # a copy: the session's smoke run stays as it ran for the other tests
    shutil.copytree(server_smoke_run.repo, first, symlinks=True)
    remote = tmp_path / "remote"
    _dvc("remote", "add", "-d", "storage", str(remote), cwd=first)
    _dvc("push", "--run-cache", cwd=first)
    assert any((remote / "files").rglob("*")), "dvc push sent no file"
    assert any((remote / "runs").rglob("*")), "dvc push --run-cache sent no run-cache entry"
    _run("git", "add", "-A", cwd=first)  # dvc.lock, params.yaml, .dvc/config, the files .gitignore lets through
    _run("git", "commit", "-q", "-m", "smoke run", cwd=first)

    second = tmp_path / "second"
    _run("git", "clone", "-q", str(first), str(second), cwd=tmp_path)
    assert not (second / "outputs/train/model.pt").exists()
    _dvc("pull", cwd=second)
    for name in REUSED:
        assert file_sha256(second / name) == file_sha256(first / name), name
    assert _hashes(second, "outputs/sample/shards") == _hashes(first, "outputs/sample/shards")
    assert _hashes(second, "outputs/train/snapshots") == _hashes(first, "outputs/train/snapshots")

    output = _dvc("repro", cwd=second)
    assert "Running stage" not in output, output[-3000:]
    assert "Stage 'train' didn't change" in output and "Stage 'sample' didn't change" in output, output[-3000:]
    assert _hashes(second, "outputs/train") == _hashes(first, "outputs/train"), "a training step ran in the clone"
    assert _hashes(second, "outputs/train/checkpoints")  # pulled, not trained
    assert _dvc("status", cwd=second).strip().endswith("Data and pipelines are up to date.")
