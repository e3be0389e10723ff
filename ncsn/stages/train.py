"""The train stage: Adam on annealed denoising score matching, resumable at any moment.

``train(cfg, data_dir, out_dir)`` writes into ``out_dir``::

    checkpoints/ckpt_XXXXXXXX.pt   full training state (the 2 newest are kept)
    snapshots/ckpt_XXXXXXXX.pt     sampling weights at every snapshot (checkpoint selection)
    model.pt                       the final sampling checkpoint read by later stages
    train_log.csv                  step, loss, images_per_s
    val_loss.csv                   step, mean and per-level DSM loss on held-out data
    sigmas.csv, sigmas.png         the noise levels

Re-running with the same ``out_dir`` and the same configuration continues from the
newest valid checkpoint: model, EMA, optimiser and every random generator are
restored, so on CPU an interrupted run ends with bit-identical weights.

Under ``torchrun`` every rank draws the same global batch (indices, levels and
noise from generators seeded identically) and trains on its own slice, so N
processes at batch B compute what 1 process computes at batch N·B.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ncsn.storage.checkpoint import (FORMAT, MODEL_FILE, atomic_save, checkpoint_path, checkpoint_sigmas,
                                     latest_valid_checkpoint, load_final_model, prune_checkpoints)
from ncsn.config import Config
from ncsn.data.transforms import preprocess
from ncsn.stages.devices import bf16_slow_reason, resolve_device
from ncsn.stages.distributed import DistInfo, barrier, init_distributed, local_rank
from ncsn.core.losses.weighting import draw_levels, draw_sigmas, weighted_dsm_loss, weighted_dsm_loss_sigma
from ncsn.models import ForwardSigma, build_model
from ncsn.storage.score_model import network_args
from ncsn.data.stats import resolve_sigmas
from ncsn.figures.sigma_schedule import write_sigma_schedule
from ncsn.storage.tables import CsvLog
from ncsn.stages.validation import input_options, validation_loss
from ncsn.data.progress import progress

log = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, float], int], None]
# Sections whose change makes old checkpoints unusable for resuming.
_RESUME_KEYS = ("base", "data", "model")
_RESUME_TRAIN_KEYS = ("batch_size", "lr", "beta1", "weight_decay", "anneal_power", "weighting", "log_sigma_mean",
                      "log_sigma_std", "sigma_sampling", "ema", "ema_rate", "grad_clip")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class _Data:
    train: torch.Tensor  # uint8 [N, C, H, W] or float [N, D]
    val: torch.Tensor
    channels: int
    image_size: int


@dataclass
class _State:
    """Everything a training checkpoint restores."""

    model: nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    data_gen: torch.Generator  # batch indices, dequantisation, flips
    noise_gen: torch.Generator  # levels and noise, on the device
    step: int = 0


def _load_data(cfg: Config, data_dir: Path) -> _Data:
    from ncsn.data import load_split

    train = load_split(data_dir, "train").data
    val = load_split(data_dir, "test").data[: cfg.train.val_size]
    return _Data(train, val, channels=train.shape[1], image_size=0 if train.ndim == 2 else train.shape[-1])


def _new_state(cfg: Config, data: _Data, sigmas: torch.Tensor, device: torch.device) -> _State:
    """The model (seeded with ``base.seed``), Adam, the EMA and the generators at step 0."""
    tc = cfg.train
    torch.manual_seed(cfg.base.seed)
    model = build_model(**network_args(cfg.model), channels=data.channels, image_size=data.image_size,
                        sigmas=sigmas).to(device)
    if tc.channels_last and data.image_size:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, 0.999), weight_decay=tc.weight_decay)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_rate), use_buffers=True) if tc.ema else None
    return _State(model, ema, optimizer, torch.Generator().manual_seed(cfg.base.seed),
                  torch.Generator(device).manual_seed(cfg.base.seed + 12345))


def _same_run(saved: dict[str, Any], cfg: Config) -> bool:
    """Whether a checkpoint's config trains the same run as ``cfg``; a key the checkpoint
    predates counts as its value in ``ncsn/conf/config.yaml`` (``Config.defaults()``)."""
    now, default = cfg.to_dict(), Config.defaults().to_dict()
    if any({**default[k], **saved[k]} != now[k] for k in _RESUME_KEYS):
        return False
    train = {**default["train"], **saved["train"]}
    return all(train[k] == now["train"][k] for k in _RESUME_TRAIN_KEYS)


def _resume(state: _State, out_dir: Path, cfg: Config, dist_info: DistInfo) -> None:
    """Restore ``state`` from the newest valid checkpoint of this configuration, if any.

    Checkpoints of another configuration are deleted (with the snapshots) and training starts afresh.
    """
    ckpt_dir = out_dir / "checkpoints"
    saved = latest_valid_checkpoint(ckpt_dir)  # on CPU: generator states must stay there
    if saved is not None and not _same_run(saved["config"], cfg):
        if dist_info.is_main:
            log.warning("%s holds checkpoints of a different configuration; starting afresh", ckpt_dir)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            shutil.rmtree(out_dir / "snapshots", ignore_errors=True)
        saved = None
    barrier(dist_info)
    if saved is None:
        return
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.ema is not None:
        state.ema.load_state_dict(saved["ema_full"])
    state.data_gen.set_state(saved["rng"]["data"])
    state.noise_gen.set_state(saved["rng"]["noise"])
    state.step = saved["step"]
    if dist_info.is_main:
        log.info("resuming from step %d", state.step)


def _sampling_state(state: _State, sigmas: torch.Tensor, cfg: Config, data: _Data) -> dict[str, Any]:
    """The checkpoint a sampler needs (``ncsn.storage.checkpoint`` layout, no optimiser or generators)."""
    return {
        "format": FORMAT,
        "step": state.step,
        "config": cfg.to_dict(),
        "data": {"dataset": cfg.base.dataset, "channels": data.channels, "image_size": data.image_size},
        "model": {k: v.cpu() for k, v in state.model.state_dict().items()},
        "ema": {k: v.cpu() for k, v in state.ema.module.state_dict().items()} if state.ema is not None else None,
    }


def _save(state: _State, sigmas: torch.Tensor, cfg: Config, data: _Data, out_dir: Path) -> None:
    """A snapshot (sampling weights: the EMA's when on) and a full, resumable checkpoint."""
    ckpt_dir = out_dir / "checkpoints"
    sampling = _sampling_state(state, sigmas, cfg, data)
    snapshot = {**sampling, "model": sampling["ema"] or sampling["model"], "ema": None}
    atomic_save(snapshot, checkpoint_path(out_dir / "snapshots", state.step))
    sampling["optimizer"] = state.optimizer.state_dict()
    sampling["ema_full"] = state.ema.state_dict() if state.ema is not None else None
    sampling["rng"] = {"data": state.data_gen.get_state(), "noise": state.noise_gen.get_state()}
    atomic_save(sampling, checkpoint_path(ckpt_dir, state.step))
    prune_checkpoints(ckpt_dir, keep=2)


def _train_step(net: nn.Module, state: _State, data: _Data, sigmas: torch.Tensor, cfg: Config,
                dist_info: DistInfo, out_dir: Path) -> float:
    """One Adam step on this rank's slice of one global batch; returns the loss before the step.

    :raises TrainingDiverged: when the loss is NaN or infinite (the weights are left unchanged).
    """
    tc, device = cfg.train, sigmas.device
    global_batch = tc.batch_size * dist_info.world_size
    lo, hi = dist_info.rank * tc.batch_size, (dist_info.rank + 1) * tc.batch_size
    # One global batch: the same draws on every rank, each rank takes its slice.
    idx = torch.randint(0, len(data.train), (global_batch,), generator=state.data_gen)
    x = preprocess(data.train[idx], state.data_gen, **input_options(cfg)).to(device, non_blocking=True)
    continuous = tc.sigma_sampling == "continuous"  # net is then ForwardSigma: net(x, sigma)
    if continuous:
        drawn = draw_sigmas(tc.weighting, float(sigmas[-1]), float(sigmas[0]), global_batch, state.noise_gen,
                            log_sigma_mean=tc.log_sigma_mean, log_sigma_std=tc.log_sigma_std, device=device)
    else:
        drawn = draw_levels(tc.weighting, sigmas, global_batch, state.noise_gen, log_sigma_mean=tc.log_sigma_mean,
                            log_sigma_std=tc.log_sigma_std)
    noise = torch.randn(x.shape, generator=state.noise_gen, device=device)
    x, drawn, noise = x[lo:hi], drawn[lo:hi], noise[lo:hi]
    if tc.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16):
        if continuous:
            loss = weighted_dsm_loss_sigma(net, x, drawn, weighting=tc.weighting, anneal_power=tc.anneal_power,
                                           noise=noise).mean()
        else:
            loss = weighted_dsm_loss(net, x, sigmas, weighting=tc.weighting, anneal_power=tc.anneal_power,
                                     levels=drawn, noise=noise).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if tc.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), tc.grad_clip)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise TrainingDiverged(
            f"training diverged: loss is {loss_value} at step {state.step + 1}; the last good checkpoint is kept in"
            f" {out_dir / 'checkpoints'}. Lower train.lr or set train.grad_clip."
        )
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    state.step += 1
    return loss_value


def train(cfg: Config, data_dir: str | Path, out_dir: str | Path, *,
          on_metrics: MetricsCallback | None = None) -> Path:
    """Train the score network of ``cfg.model`` on the prepared data.

    :param data_dir: the prepare stage's output folder.
    :param out_dir: this stage's output folder (resumed from when it holds checkpoints).
    :param on_metrics: called on the main rank with ``({name: value}, step)``, after the step's
        snapshot (if any) is written: checkpoint before tracking.
    :return: path of the final sampling checkpoint ``out_dir/model.pt``.
    :raises TrainingDiverged: when the loss turns NaN/inf; the last good checkpoint stays.
    """
    from ncsn.data import read_stats

    data_dir, out_dir, tc = Path(data_dir), Path(out_dir), cfg.train
    device = resolve_device(cfg.base.device, local_rank())
    dist_info = init_distributed(device)
    main = dist_info.is_main
    sigmas = resolve_sigmas(cfg.model, read_stats(data_dir)).to(device)
    data = _load_data(cfg, data_dir)
    state = _new_state(cfg, data, sigmas, device)
    _resume(state, out_dir, cfg, dist_info)
    net: nn.Module = ForwardSigma(state.model) if tc.sigma_sampling == "continuous" else state.model
    if dist_info.world_size > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if tc.compile:
        net = torch.compile(net)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_sigma_schedule(out_dir, sigmas.tolist())
        train_log = CsvLog(out_dir / "train_log.csv", ["step", "loss", "images_per_s"], state.step)
        val_log = CsvLog(out_dir / "val_loss.csv",
                          ["step", "mean", *[f"level_{i}" for i in range(len(sigmas))]], state.step)
    if tc.bf16 and main and (reason := bf16_slow_reason(device)):
        log.warning("train.bf16 is on, but %s; set train.bf16: false", reason)

    bar = progress(total=tc.n_iters, initial=state.step, desc="train", disable=not main)
    t_last, n_last = time.perf_counter(), state.step
    state.model.train()
    while state.step < tc.n_iters:
        try:
            loss_value = _train_step(net, state, data, sigmas, cfg, dist_info, out_dir)
        except TrainingDiverged:
            bar.close()  # the error line then starts on a line of its own
            raise
        bar.update(1)
        step = state.step
        logged: list[dict[str, float]] = []  # handed to on_metrics once the step's snapshot is on disk
        if main and (step % tc.log_freq == 0 or step == tc.n_iters):
            now = time.perf_counter()
            ips = (step - n_last) * tc.batch_size * dist_info.world_size / max(now - t_last, 1e-9)
            t_last, n_last = now, step
            train_log.append([step, loss_value, ips])
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{ips:.0f}")
            logged.append({"train_loss": loss_value, "images_per_s": ips})
        if main and (step % tc.val_freq == 0 or step == tc.n_iters):
            per_level = validation_loss(state.ema.module if state.ema is not None else state.model, data.val,
                                        sigmas, cfg).cpu()
            val_log.append([step, per_level.mean().item(), *per_level.tolist()])
            logged.append({"val_loss": per_level.mean().item(),
                           **{f"val_loss_level_{i}": v for i, v in enumerate(per_level.tolist())}})
            state.model.train()
        if main and (step % tc.snapshot_freq == 0 or step == tc.n_iters):
            _save(state, sigmas, cfg, data, out_dir)  # before tracking: a stage killed while it logs resumes here
        if on_metrics:
            for metrics in logged:
                on_metrics(metrics, step)
    bar.close()
    final = out_dir / MODEL_FILE
    if main:
        atomic_save(_sampling_state(state, sigmas, cfg, data), final)
    barrier(dist_info)
    return final


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """``ncsn train``: train on ``paths.prepare``; checkpoints, logs and ``model.pt`` into ``paths.train``."""
    from ncsn.tracking.sigma_logging import log_sigma_schedule

    out_dir = Path(cfg.paths.train)
    train(cfg, cfg.paths.prepare, out_dir, on_metrics=tracker.log_metrics)
    final, ckpt = load_final_model(cfg)
    log_sigma_schedule(tracker, checkpoint_sigmas(ckpt), out_dir)
    for name in ("train_log.csv", "val_loss.csv"):
        tracker.log_artifact(out_dir / name)
    tracker.log_artifact(final, "checkpoint")
