"""Sampling survives SIGKILL: the rerun continues without duplicate or missing samples.

A smoke model is trained once; the ``sample`` stage then runs as a real subprocess and is
killed with SIGKILL at a random point (several seeds). The rerun must keep the shards that
were complete, draw only the missing ones, and end with files bit-identical to an
uninterrupted run. Sample ``i`` depends only on its seed, not on the run or batch it is in.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from ncsn.cli import main
from ncsn.storage.shards import existing_shards, read_samples
from tests.helpers import REPO, ncsn_command, write_params

N_SAMPLES, BATCH = 40, 4  # 10 shards, ~0.1 s each on one core
SAMPLE = {"n_samples": N_SAMPLES, "batch_size": BATCH, "n_steps_each": 2, "trajectory_samples": 2}
OUTPUTS = {"grid.png", "trajectory.png", "trajectory.gif", "shards"}


# In-process runs must compute exactly what the single-threaded subprocesses compute.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``outputs/`` with prepared mnist5k and a smoke model (trained in-process, once)."""
    root = tmp_path_factory.mktemp("trained")
    params = write_params(root, {"train": {"n_iters": 10, "snapshot_freq": 10, "val_freq": 10, "val_size": 16,
                                           "batch_size": 16}})
    for stage in ("prepare", "train"):
        assert main(["--params", str(params), stage]) == 0
    return root / "outputs"


def _workspace(tmp_path: Path, trained: Path, **sample) -> Path:
    """A params file whose prepare and train outputs are the trained fixture's."""
    params = write_params(tmp_path, {"sample": {**SAMPLE, **sample}})
    (tmp_path / "outputs").mkdir(exist_ok=True)
    for stage in ("prepare", "train"):
        (tmp_path / "outputs" / stage).symlink_to(trained / stage)
    return params


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temporary files included), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    params = _workspace(root, trained)
    assert main(["--params", str(params), "sample"]) == 0
    out = root / "outputs" / "sample"
    assert len(existing_shards(out / "shards")) == N_SAMPLES // BATCH
    return out


def _kill_midway(params: Path, cwd: Path, shards_done: int, delay: float) -> dict[str, tuple[int, int]]:
    """Start ``ncsn sample``, SIGKILL it ``delay`` s after ``shards_done`` shards exist.

    :return: (inode, mtime) of every complete shard left behind.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(ncsn_command("--params", str(params), "sample"), cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = cwd / "outputs" / "sample" / "shards"
    deadline = time.monotonic() + 120
    while len(existing_shards(shard_dir)) < shards_done and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in existing_shards(shard_dir).values()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_during_sampling_then_rerun_matches_an_uninterrupted_run(
        seed: int, tmp_path: Path, trained: Path, reference: Path) -> None:
    rng = random.Random(seed)
    params = _workspace(tmp_path, trained)
    kept = _kill_midway(params, tmp_path, shards_done=rng.randrange(1, N_SAMPLES // BATCH - 2),
                        delay=rng.uniform(0.0, 0.1))
    assert len(kept) < N_SAMPLES // BATCH, "killed after the last shard: nothing left to resume"
    out = tmp_path / "outputs" / "sample"
    # What a kill in the middle of a write leaves (the random moment may or may not have hit one).
    (out / "shards" / ".shard_00009.pt.x1y2z3.tmp").write_bytes(b"PK\x03\x04 half a shard")
    (out / ".grid.png.x1y2z3.png").write_bytes(b"\x89PNG half a grid")

    assert main(["--params", str(params), "sample"]) == 0
    assert _files(out) == _files(reference)  # same files, same bytes, no temporary leftovers
    for name, identity in kept.items():  # complete shards were kept, not drawn again
        path = out / "shards" / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity, name
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    _, seeds = read_samples(out / "shards")
    assert seeds.tolist() == list(range(N_SAMPLES))  # each seed once, in order


def test_a_changed_sample_count_redraws_only_what_differs(tmp_path: Path, trained: Path, reference: Path) -> None:
    """``--n`` 6, then 10, then 3 into one folder: exactly the seeds asked for, each sample as in the full run."""
    params = _workspace(tmp_path, trained)
    shard_dir = tmp_path / "outputs" / "sample" / "shards"
    full, _ = read_samples(reference / "shards")
    for n in (6, 10, 3):
        assert main(["--params", str(params), "sample", "--n", str(n)]) == 0
        images, seeds = read_samples(shard_dir)
        assert seeds.tolist() == list(range(n)), n
        assert torch.equal(images, full[:n]), n


def test_samples_depend_only_on_their_seeds_not_on_the_batch(tmp_path: Path, trained: Path, reference: Path) -> None:
    params = _workspace(tmp_path, trained, batch_size=7)
    assert main(["--params", str(params), "sample"]) == 0
    images, seeds = read_samples(tmp_path / "outputs" / "sample" / "shards")
    full, _ = read_samples(reference / "shards")
    assert seeds.tolist() == list(range(N_SAMPLES)) and torch.equal(images, full)

