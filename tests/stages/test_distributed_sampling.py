"""Sampling and evaluation under ``torchrun``: two gloo ranks on the CPU do what one process does.

A smoke model and classifier are trained once; one process samples and evaluates in-process
(the reference). Then ``torchrun --nproc_per_node 2 -m ncsn sample`` must write the same bytes,
each rank drawing half of the shards (read from the ``rank r of N drew … shards`` log line); a rerun
after losing one rank's shards must draw only those; and ``torchrun … evaluate`` must give the
very same numbers (IS / FID / KID, checkpoint selection): each rank extracts features for
whole batches of torch-fidelity's, so the combined features are those of one process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ncsn.cli import main
from ncsn.storage.shards import existing_shards, read_samples
from tests.helpers import REPO, link_prepared, write_params

SAMPLE = {"n_samples": 16, "batch_size": 4, "n_steps_each": 1, "trajectory_samples": 2}  # 4 shards
N_SHARDS = 4
RANK_LINE = re.compile(r"rank (\d+) of (\d+) drew (\d+) of (\d+) shards in [\d.]+ s: (\S+)")

# In-process runs must compute exactly what the single-threaded ranks compute.
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """``outputs/`` with prepared mnist5k, a smoke classifier and a smoke model (trained in-process, once)."""
    root = tmp_path_factory.mktemp("trained")
    link_prepared(root, prepared)
    params = write_params(root, {"train": {"n_iters": 10, "snapshot_freq": 10, "val_freq": 10, "val_size": 16,
                                           "batch_size": 16}, "classifier": {"n_iters": 5}})
    for stage in ("classifier", "train"):
        assert main(["--params", str(params), stage]) == 0
    return root / "outputs"


def _workspace(folder: Path, trained: Path) -> Path:
    """A params file whose prepare, classifier and train outputs are the trained fixture's."""
    folder.mkdir(parents=True, exist_ok=True)
    params = write_params(folder, {"sample": SAMPLE, "classifier": {"n_iters": 5}})
    (folder / "outputs").mkdir(exist_ok=True)
    for stage in ("prepare", "classifier", "train"):
        (folder / "outputs" / stage).symlink_to((trained / stage).resolve())
    return params


def _torchrun(params: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m ncsn --params PARAMS ARGS`` (gloo, one thread a rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ncsn", "--params", str(params), *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _drawn(log: str) -> dict[int, list[int]]:
    """Rank → the shards it drew, from the ``rank r of N drew k of M shards in t s: 0-2,5`` lines."""
    drawn = {}
    for rank, _, count, _, ranges in RANK_LINE.findall(log):
        shards = [] if ranges == "none" else [k for part in ranges.split(",")
                                              for k in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)]
        assert len(shards) == int(count)
        drawn[int(rank)] = shards
    return drawn


def _files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temporary files included), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _numbers(metrics_path: Path) -> dict:
    """metrics.json without the one value that names the workspace (a path)."""
    metrics = json.loads(metrics_path.read_text())
    metrics.pop("best_checkpoint_path")
    return metrics


@pytest.fixture(scope="module")
def one_process(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``outputs/`` of one process: ``ncsn sample`` then ``ncsn evaluate``, in-process."""
    root = tmp_path_factory.mktemp("one")
    params = _workspace(root, trained)
    for stage in ("sample", "evaluate"):
        assert main(["--params", str(params), stage]) == 0
    return root / "outputs"


@pytest.fixture(scope="module")
def two_ranks(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The workspace of ``torchrun --nproc_per_node 2 -m ncsn sample``, and its log."""
    root = tmp_path_factory.mktemp("two")
    result = _torchrun(_workspace(root, trained), root, "sample")
    return root, result.stderr


def test_two_ranks_write_the_bytes_of_one_process_each_drawing_half(one_process: Path,
                                                                    two_ranks: tuple[Path, str]) -> None:
    root, log = two_ranks
    assert _files(root / "outputs" / "sample") == _files(one_process / "sample")
    assert _drawn(log) == {0: [0, 2], 1: [1, 3]}


def test_a_rerun_after_losing_a_rank_draws_only_its_shards(one_process: Path, two_ranks: tuple[Path, str],
                                                           trained: Path, tmp_path: Path) -> None:
    params = _workspace(tmp_path, trained)
    out = tmp_path / "outputs" / "sample"
    shutil.copytree(two_ranks[0] / "outputs" / "sample", out)
    shard_dir = out / "shards"
    for index in (1, 3):  # what rank 1 had drawn, as if it was killed before writing any
        (shard_dir / f"shard_{index:05d}.pt").unlink()
    (shard_dir / ".shard_00003.pt.x1y2z3.tmp").write_bytes(b"PK\x03\x04 half a shard")  # its write in flight
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in existing_shards(shard_dir).values()}

    drawn = _drawn(_torchrun(params, tmp_path, "sample").stderr)
    assert drawn == {0: [1], 1: [3]}  # the missing list [1, 3], one shard each
    assert _files(out) == _files(one_process / "sample")
    for name, identity in kept.items():
        path = shard_dir / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity, name
    _, seeds = read_samples(shard_dir)
    assert seeds.tolist() == list(range(SAMPLE["n_samples"]))


def test_two_ranks_evaluate_to_the_numbers_of_one_process(one_process: Path, two_ranks: tuple[Path, str]) -> None:
    """Exactly equal: the same images in every extractor batch, and torch-fidelity's metric code on them."""
    root, _ = two_ranks
    _torchrun(root / "params.yaml", root, "evaluate")
    two, one = root / "outputs" / "evaluate", one_process / "evaluate"
    numbers = _numbers(one / "metrics.json")
    assert _numbers(two / "metrics.json") == numbers
    assert {"classifier_is", "classifier_fid", "classifier_kid_mean", "reference_classifier_is_test",
            "floor_classifier_fid_train_vs_test"} <= set(numbers)
    assert (two / "checkpoint_fid.csv").read_bytes() == (one / "checkpoint_fid.csv").read_bytes()
    assert not list(two.glob(".fidelity-cache-*"))


def test_the_ranks_features_are_those_torch_fidelity_caches_itself(trained: Path, tmp_path: Path) -> None:
    """The cache files the ranks fill have torch-fidelity's names and hold its very tensors."""
    from ncsn.config import load_config
    from ncsn.data import load_split
    from ncsn.stages.distributed import DistInfo
    from ncsn.evaluation.distributed_features import cache_features, feature_cache_path, feature_layers
    from ncsn.evaluation.extractor import resolve_extractor
    from ncsn.evaluation.fidelity import content_name, fidelity_metrics

    cfg = load_config(_workspace(tmp_path / "ws", trained))
    extractor = resolve_extractor(cfg, vector_data=False,
                                  classifier_path=trained / "classifier" / "classifier.pt")
    test = load_split(cfg.paths.prepare, "test").data[:70]
    own, ours = tmp_path / "own", tmp_path / "ours"
    fidelity_metrics(test, test[:40], extractor, kid_subset_size=8, batch_size=32, cache_dir=own)
    name = content_name(test, extractor)
    cache_features(test, name, extractor, ours, batch_size=32, device=torch.device("cpu"), dist=DistInfo())
    for layer in feature_layers(extractor):
        theirs = torch.load(feature_cache_path(own, name, extractor, layer), weights_only=True)
        assert torch.equal(torch.load(feature_cache_path(ours, name, extractor, layer), weights_only=True), theirs)


def test_two_ranks_inpaint_what_one_process_inpaints(trained: Path, tmp_path: Path) -> None:
    """Each rank completes half of the images; rank 0 writes them all (equal up to batch-size rounding)."""
    import torch

    one, two = tmp_path / "one", tmp_path / "two"
    params_one, params_two = _workspace(one, trained), _workspace(two, trained)
    assert main(["--params", str(params_one), "inpaint"]) == 0
    _torchrun(params_two, two, "inpaint")
    expected = torch.load(one / "outputs" / "inpaint" / "results.pt", weights_only=True)
    found = torch.load(two / "outputs" / "inpaint" / "results.pt", weights_only=True)
    assert expected.keys() == found.keys() and len(expected["originals"]) >= 2
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value, rtol=0, atol=1e-5, msg=key)
    assert sorted(p.name for p in (two / "outputs" / "inpaint").glob("*.png")) == \
        sorted(p.name for p in (one / "outputs" / "inpaint").glob("*.png"))
