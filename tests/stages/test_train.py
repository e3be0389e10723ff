"""Training: exact resume after SIGKILL, divergence handling, DDP equivalence, bf16 on the CPU."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ncsn.storage.checkpoint import list_checkpoints, load_checkpoint
from ncsn.config import load_config
from tests.helpers import REPO, link_prepared, ncsn_command, run_ncsn, write_params

TINY = {"train": {"batch_size": 8, "val_size": 16, "log_freq": 2, "val_freq": 4}, "model": {"ngf": 8}}


def _params(tmp_path: Path, model: dict | None = None, **train) -> Path:
    overrides = {"train": {**TINY["train"], **train}, "model": {**TINY["model"], **(model or {})}}
    return write_params(tmp_path, overrides)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    return {**{f"model.{k}": v for k, v in ckpt["model"].items()},
            **{f"ema.{k}": v for k, v in (ckpt["ema"] or {}).items()}}


@pytest.mark.parametrize("objective", ["paper", "edm"])
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, prepared: Path, objective: str) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for folder in (straight, killed):
        folder.mkdir()
        link_prepared(folder, prepared)
    n_iters, snapshot = 24, 6
    run = {"model": {"precond": "edm"} if objective == "edm" else {}, "weighting": objective,
           "n_iters": n_iters, "snapshot_freq": snapshot}
    run_ncsn("--params", str(_params(straight, **run)), "train", cwd=straight)

    params = _params(killed, **run)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(ncsn_command("--params", str(params), "train"), cwd=killed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = killed / "outputs" / "train" / "checkpoints"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(s >= 2 * snapshot for s, _ in list_checkpoints(ckpt_dir)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [s for s, _ in list_checkpoints(ckpt_dir)]
    assert steps and max(steps) < n_iters, f"the run was not interrupted mid-way: {steps}"
    run_ncsn("--params", str(params), "train", cwd=killed)

    a = _weights(straight / "outputs" / "train" / "model.pt")
    b = _weights(killed / "outputs" / "train" / "model.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The logs hold each step once, whatever the interruption.
    log_steps = [int(line.split(",")[0]) for line in
                 (killed / "outputs" / "train" / "train_log.csv").read_text().splitlines()[1:]]
    assert log_steps == sorted(set(log_steps))


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
        tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ncsn.stages.train as train_module

    link_prepared(tmp_path, prepared)
    cfg = load_config(_params(tmp_path, n_iters=20, snapshot_freq=5))
    real_loss = train_module.weighted_dsm_loss  # the training step's loss (validation has its own)
    calls = {"n": 0}

    def exploding(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 8 else loss

    monkeypatch.setattr(train_module, "weighted_dsm_loss", exploding)
    with pytest.raises(train_module.TrainingDiverged, match=r"loss is nan at step 8.*last good checkpoint"):
        train_module.train(cfg, cfg.paths.prepare, cfg.paths.train)
    kept = list_checkpoints(Path(cfg.paths.train) / "checkpoints")
    assert [s for s, _ in kept] == [5]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(kept[0][1])["model"].values())


def test_changed_configuration_starts_afresh(tmp_path: Path, prepared: Path) -> None:
    link_prepared(tmp_path, prepared)
    run_ncsn("--params", str(_params(tmp_path, n_iters=4, snapshot_freq=2)), "train", cwd=tmp_path)
    result = run_ncsn("--params", str(_params(tmp_path, n_iters=4, snapshot_freq=2, lr=5e-4)), "train",
                      cwd=tmp_path)
    assert "different configuration" in result.stderr
    assert load_checkpoint(tmp_path / "outputs" / "train" / "model.pt")["config"]["train"]["lr"] == 5e-4


def test_two_gloo_processes_match_one_process_at_double_batch(tmp_path: Path, prepared: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        link_prepared(folder, prepared)
    run_ncsn("--params", str(_params(one, n_iters=4, snapshot_freq=4, batch_size=8, ema=False)), "train", cwd=one)
    params = _params(two, n_iters=4, snapshot_freq=4, batch_size=4, ema=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ncsn", "--params", str(params), "train"]
    result = subprocess.run(cmd, cwd=two, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a = load_checkpoint(one / "outputs" / "train" / "model.pt")["model"]
    b = load_checkpoint(two / "outputs" / "train" / "model.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_bf16_training_runs_on_the_cpu_close_to_float32(tmp_path: Path, prepared: Path) -> None:
    """train.bf16 autocasts on the CPU too: same data and noise, losses within a few percent
    of float32 but not equal (the autocast is really on); the weights stay float32."""
    losses = {}
    for bf16 in (False, True):
        folder = tmp_path / f"bf16_{bf16}"
        folder.mkdir()
        link_prepared(folder, prepared)
        run_ncsn("--params", str(_params(folder, n_iters=4, snapshot_freq=4, bf16=bf16)), "train", cwd=folder)
        rows = (folder / "outputs" / "train" / "train_log.csv").read_text().splitlines()[1:]
        losses[bf16] = [float(row.split(",")[1]) for row in rows]
        weights = _weights(folder / "outputs" / "train" / "model.pt")
        assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    exact, approx = losses[False], losses[True]
    assert len(exact) == len(approx) == 2 and exact != approx
    for a, b in zip(exact, approx):
        assert b == pytest.approx(a, rel=0.05)


def test_continuous_sigma_training_runs_through_forward_sigma(tmp_path: Path, prepared: Path) -> None:
    """train.sigma_sampling continuous trains the U-Net at σ drawn over [σ_L, σ_1] (another loss than the
    levels' on the same data); the RefineNet is refused in one line."""
    from ncsn.config import ConfigError, config_from_dict

    losses = {}
    for sampling in ("levels", "continuous"):
        folder = tmp_path / sampling
        folder.mkdir()
        link_prepared(folder, prepared)
        run_ncsn("--params", str(_params(folder, n_iters=4, snapshot_freq=4, sigma_sampling=sampling)), "train",
                 cwd=folder)
        rows = (folder / "outputs" / "train" / "train_log.csv").read_text().splitlines()[1:]
        losses[sampling] = [float(row.split(",")[1]) for row in rows]
    assert all(math.isfinite(v) for v in losses["continuous"]) and losses["continuous"] != losses["levels"]
    with pytest.raises(ConfigError, match=r"'train.sigma_sampling' = 'continuous' is invalid; model.arch 'ncsn'"
                                          r" takes only its trained levels; use 'levels', or arch 'unet' or 'mlp'"):
        config_from_dict({"profile": "smoke", "model": {"arch": "ncsn"}, "train": {"sigma_sampling": "continuous"}})
