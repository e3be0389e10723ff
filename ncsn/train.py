"""Training: Adam on annealed denoising score matching, resumable at any moment.

``train(cfg, data_dir, out_dir)`` writes into ``out_dir``::

    checkpoints/ckpt_XXXXXXXX.pt   full training state (the 2 newest are kept)
    snapshots/ckpt_XXXXXXXX.pt     sampling weights at every snapshot (checkpoint selection)
    model.pt                       the final sampling checkpoint read by later stages
    train_log.csv                  step, loss, images_per_s
    val_loss.csv                   step, mean and per-level DSM loss on held-out data
    sigmas.csv                     the noise levels

Re-running with the same ``out_dir`` and the same configuration continues from the
newest valid checkpoint: model, EMA, optimiser and every random generator are
restored, so on CPU an interrupted run ends with bit-identical weights.

Under ``torchrun`` every rank draws the same global batch (indices, levels and
noise from generators seeded identically) and trains on its own slice, so N
processes at batch B compute what 1 process computes at batch N·B.
"""

from __future__ import annotations

import csv
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
from tqdm import tqdm

from ncsn.checkpoint import (FORMAT, atomic_save, checkpoint_path, latest_valid_checkpoint, prune_checkpoints)
from ncsn.config import Config, ModelConfig
from ncsn.distributed import DistInfo, barrier, bf16_slow_reason, init_distributed, local_rank, resolve_device
from ncsn.losses import dsm_loss
from ncsn.models import build_model
from ncsn.sigmas import geometric_sigmas, num_levels_for_dim

log = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, float], int], None]
# Sections whose change makes old checkpoints unusable for resuming.
_RESUME_KEYS = ("base", "data", "model")
_RESUME_TRAIN_KEYS = ("batch_size", "lr", "beta1", "weight_decay", "anneal_power", "ema", "ema_rate", "grad_clip")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class _Data:
    train: torch.Tensor  # uint8 [N, C, H, W] or float [N, D]
    val: torch.Tensor
    channels: int
    image_size: int


def resolve_sigmas(model_cfg: ModelConfig, stats: dict[str, Any]) -> torch.Tensor:
    """The geometric schedule, taking ``auto`` values from the prepare stage's stats.

    :return: [L] descending noise levels.
    """
    sigma_begin = stats["sigma_begin_suggestion"] if model_cfg.sigma_begin == "auto" else model_cfg.sigma_begin
    if model_cfg.num_levels == "auto":
        num_levels = num_levels_for_dim(math.prod(stats["shape"]), float(sigma_begin), model_cfg.sigma_end)
    else:
        num_levels = model_cfg.num_levels
    return geometric_sigmas(float(sigma_begin), model_cfg.sigma_end, int(num_levels))


def preprocess(batch: torch.Tensor, cfg: Config, generator: torch.Generator | None) -> torch.Tensor:
    """Stored examples → model input: uint8 images to [0,1] (+ options); 2-D data as is."""
    if batch.dtype != torch.uint8:
        return batch.float()
    from ncsn.data.transforms import resolve_flip, to_model_input

    return to_model_input(batch, dequantize=cfg.data.dequantize, logit_transform=cfg.data.logit_transform,
                          flip=resolve_flip(cfg), generator=generator)


def _load_data(cfg: Config, data_dir: Path) -> _Data:
    from ncsn.data import load_split

    train = load_split(data_dir, "train").data
    val = load_split(data_dir, "test").data[: cfg.train.val_size]
    if train.ndim == 2:
        return _Data(train, val, channels=train.shape[1], image_size=0)
    return _Data(train, val, channels=train.shape[1], image_size=train.shape[-1])


def _same_run(saved: dict[str, Any], cfg: Config) -> bool:
    now = cfg.to_dict()
    if any(saved[k] != now[k] for k in _RESUME_KEYS):
        return False
    return all(saved["train"][k] == now["train"][k] for k in _RESUME_TRAIN_KEYS)


@torch.no_grad()
def validation_loss(model: nn.Module, val: torch.Tensor, sigmas: torch.Tensor, cfg: Config,
                    *, batch_size: int = 256) -> torch.Tensor:
    """Mean DSM loss on held-out data at every noise level (paper: model comparison).

    Uses a fixed generator, so values are comparable across steps and runs.

    :return: [L] loss per level, weighted by sigma ** anneal_power as in training.
    """
    device = sigmas.device
    gen = torch.Generator(device).manual_seed(cfg.base.seed + 1)
    cpu_gen = torch.Generator().manual_seed(cfg.base.seed + 1)
    totals = torch.zeros(len(sigmas), device=device)
    for start in range(0, len(val), batch_size):
        x = preprocess(val[start:start + batch_size], cfg, cpu_gen).to(device)
        for level in range(len(sigmas)):
            levels = torch.full((len(x),), level, dtype=torch.long, device=device)
            totals[level] += dsm_loss(model, x, sigmas, anneal_power=cfg.train.anneal_power, levels=levels,
                                      generator=gen).sum()
    return totals / len(val)


class _CsvLog:
    """Append-only CSV that forgets rows past the step it resumes from."""

    def __init__(self, path: Path, header: list[str], resume_step: int) -> None:
        self.path = path
        rows: list[list[str]] = []
        if resume_step > 0 and path.is_file():
            with path.open() as f:
                rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= resume_step]
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([header, *rows])

    def append(self, row: list[Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])


def _sampling_state(model: nn.Module, ema: AveragedModel | None, sigmas: torch.Tensor, cfg: Config,
                    data: _Data, step: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "step": step,
        "config": cfg.to_dict(),
        "sigmas": sigmas.cpu(),
        "data": {"dataset": cfg.base.dataset, "channels": data.channels, "image_size": data.image_size},
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "ema": {k: v.cpu() for k, v in ema.module.state_dict().items()} if ema is not None else None,
    }


def train(cfg: Config, data_dir: str | Path, out_dir: str | Path, *,
          on_metrics: MetricsCallback | None = None) -> Path:
    """Train the score network of ``cfg.model`` on the prepared data.

    :param data_dir: the prepare stage's output folder.
    :param out_dir: this stage's output folder (resumed from when it holds checkpoints).
    :param on_metrics: called on the main rank with ``({name: value}, step)``.
    :return: path of the final sampling checkpoint ``out_dir/model.pt``.
    :raises TrainingDiverged: when the loss turns NaN/inf; the last good checkpoint stays.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    device = resolve_device(cfg.base.device, local_rank())
    dist_info: DistInfo = init_distributed(device)
    tc = cfg.train
    from ncsn.data import read_stats

    sigmas = resolve_sigmas(cfg.model, read_stats(data_dir)).to(device)
    data = _load_data(cfg, data_dir)

    torch.manual_seed(cfg.base.seed)
    model = build_model(cfg.model, channels=data.channels, image_size=data.image_size, sigmas=sigmas).to(device)
    if tc.channels_last and data.image_size:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(tc.beta1, 0.999), weight_decay=tc.weight_decay)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_rate), use_buffers=True) if tc.ema else None
    data_gen = torch.Generator().manual_seed(cfg.base.seed)
    noise_gen = torch.Generator(device).manual_seed(cfg.base.seed + 12345)

    ckpt_dir, snap_dir = out_dir / "checkpoints", out_dir / "snapshots"
    step = 0
    saved = latest_valid_checkpoint(ckpt_dir)  # on CPU: generator states must stay there
    if saved is not None and not _same_run(saved["config"], cfg):
        if dist_info.is_main:
            log.warning("%s holds checkpoints of a different configuration; starting afresh", ckpt_dir)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            shutil.rmtree(snap_dir, ignore_errors=True)
        saved = None
    barrier(dist_info)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.load_state_dict(saved["ema_full"])
        data_gen.set_state(saved["rng"]["data"])
        noise_gen.set_state(saved["rng"]["noise"])
        step = saved["step"]
        if dist_info.is_main:
            log.info("resuming from step %d", step)

    net: nn.Module = model
    if dist_info.world_size > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if tc.compile:
        net = torch.compile(net)

    main = dist_info.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_sigmas(out_dir / "sigmas.csv", sigmas)
        train_log = _CsvLog(out_dir / "train_log.csv", ["step", "loss", "images_per_s"], step)
        val_log = _CsvLog(out_dir / "val_loss.csv",
                          ["step", "mean", *[f"level_{i}" for i in range(len(sigmas))]], step)

    def save(step: int) -> None:
        if not main:
            return
        state = _sampling_state(model, ema, sigmas, cfg, data, step)
        snapshot = {**state, "model": state["ema"] or state["model"], "ema": None}
        atomic_save(snapshot, checkpoint_path(snap_dir, step))
        state["optimizer"] = optimizer.state_dict()
        state["ema_full"] = ema.state_dict() if ema is not None else None
        state["rng"] = {"data": data_gen.get_state(), "noise": noise_gen.get_state()}
        atomic_save(state, checkpoint_path(ckpt_dir, step))
        prune_checkpoints(ckpt_dir, keep=2)

    global_batch = tc.batch_size * dist_info.world_size
    lo, hi = dist_info.rank * tc.batch_size, (dist_info.rank + 1) * tc.batch_size
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16)
    if tc.bf16 and main and (reason := bf16_slow_reason(device)):
        log.warning("train.bf16 is on, but %s; set train.bf16: false", reason)
    bar = tqdm(total=tc.n_iters, initial=step, desc="train", disable=not main, dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), step
    model.train()
    while step < tc.n_iters:
        # One global batch: the same draws on every rank, each rank takes its slice.
        idx = torch.randint(0, len(data.train), (global_batch,), generator=data_gen)
        x = preprocess(data.train[idx], cfg, data_gen).to(device, non_blocking=True)
        levels = torch.randint(0, len(sigmas), (global_batch,), generator=noise_gen, device=device)
        noise = torch.randn(x.shape, generator=noise_gen, device=device)
        x, levels, noise = x[lo:hi], levels[lo:hi], noise[lo:hi]
        if tc.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = dsm_loss(net, x, sigmas, anneal_power=tc.anneal_power, levels=levels, noise=noise).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()  # the error line then starts on a line of its own
            raise TrainingDiverged(
                f"training diverged: loss is {loss_value} at step {step + 1}; the last good checkpoint is kept in"
                f" {ckpt_dir}. Lower train.lr or set train.grad_clip."
            )
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        bar.update(1)

        if main and (step % tc.log_freq == 0 or step == tc.n_iters):
            now = time.perf_counter()
            ips = (step - n_last) * global_batch / max(now - t_last, 1e-9)
            t_last, n_last = now, step
            train_log.append([step, loss_value, ips])
            bar.set_postfix(loss=f"{loss_value:.4f}", img_s=f"{ips:.0f}")
            if on_metrics:
                on_metrics({"train_loss": loss_value, "images_per_s": ips}, step)
        if main and (step % tc.val_freq == 0 or step == tc.n_iters):
            eval_model = ema.module if ema is not None else model
            per_level = validation_loss(eval_model, data.val, sigmas, cfg).cpu()
            val_log.append([step, per_level.mean().item(), *per_level.tolist()])
            if on_metrics:
                on_metrics({"val_loss": per_level.mean().item(),
                            **{f"val_loss_level_{i}": v for i, v in enumerate(per_level.tolist())}}, step)
            model.train()
        if step % tc.snapshot_freq == 0 or step == tc.n_iters:
            save(step)
    bar.close()
    final = out_dir / "model.pt"
    if main:
        atomic_save(_sampling_state(model, ema, sigmas, cfg, data, step), final)
    barrier(dist_info)
    return final


def _write_sigmas(path: Path, sigmas: torch.Tensor) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["level", "sigma"])
        writer.writerows([i, f"{s:.8g}"] for i, s in enumerate(sigmas.tolist()))
