"""Sample with the configured sampler (``sample.sampler``): shards on disk, a grid, and the trajectory.

Writes into ``paths.sample`` (or ``--out``)::

    shards/shard_XXXXX.pt   samples and their seeds, ``sample.batch_size`` per shard
    shards/manifest.json    what the shards were drawn from (model file hash, settings)
    grid.png                the first samples
    trajectory.png          a few samples after every noise level (rows: samples)
    trajectory.gif          the same as an animation

Sample ``i`` uses seed ``base.seed + i``. Shards are written atomically and only
missing ones are drawn, so a rerun after a crash continues without duplicate or
missing samples; memory stays flat in ``sample.n_samples``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from ncsn.checkpoint import CheckpointError, check_compatible, file_sha256
from ncsn.config import Config
from ncsn.generate import (ScoreModel, evaluations_per_sample, load_for_sampling, sample_batch, sampler_eps, to_uint8,
                           trajectory)
from ncsn.images import grid_image, save_gif, save_grid, scatter_image
from ncsn.shards import (existing_shards, read_samples, remove_partial_files, shard_holds, shard_seeds,
                         write_shard)

_OUTPUTS = ("grid.png", "trajectory.png", "trajectory.gif")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"it must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="checkpoint path or registry URI such as models:/ncsn-mnist5k@champion"
                             " (default: paths.train/model.pt)")
    parser.add_argument("--out", default=None, help="output folder (default: paths.sample)")
    parser.add_argument("--n", type=_positive_int, default=None,
                        help="number of samples (default: sample.n_samples)")


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _reset_if_stale(shard_dir: Path, manifest: dict) -> None:
    """Drop shards drawn from another model or with other settings (or without a readable manifest).

    :raises CheckpointError: when the folder cannot be written.
    """
    path = shard_dir / "manifest.json"
    try:
        if path.is_file() and _read_manifest(path) == manifest:
            return
        shutil.rmtree(shard_dir, ignore_errors=True)
        shard_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(path)
    except OSError as err:
        raise CheckpointError(f"cannot write {shard_dir}: {err.strerror or err}") from None


def draw_shards(model: ScoreModel, cfg: Config, shard_dir: Path, n_samples: int) -> None:
    """Draw every missing shard of ``n_samples`` samples into ``shard_dir``."""
    size = cfg.sample.batch_size
    n_shards = math.ceil(n_samples / size)
    remove_partial_files(shard_dir)
    done = existing_shards(shard_dir)
    for index, path in list(done.items()):
        # A shard of another sample count (``--n``) or a damaged one is drawn again.
        if index >= n_shards or not shard_holds(path, shard_seeds(cfg.base.seed, index, size, n_samples)):
            path.unlink()
            del done[index]
    todo = [k for k in range(n_shards) if k not in done]
    for index in tqdm(todo, desc="sample shards", initial=n_shards - len(todo), total=n_shards, dynamic_ncols=True):
        seeds = shard_seeds(cfg.base.seed, index, size, n_samples)
        x = sample_batch(model, seeds, cfg.sample)
        images = to_uint8(x, logit_transform=model.logit_transform) if x.ndim == 4 else x.float().cpu()
        write_shard(shard_dir, index, images, seeds)


def write_trajectory(model: ScoreModel, cfg: Config, out_dir: Path) -> None:
    """``trajectory.png`` (samples × levels) and ``trajectory.gif`` from the progressive sampler."""
    seeds = list(range(cfg.base.seed, cfg.base.seed + cfg.sample.trajectory_samples))
    frames, columns = [], []
    for level, x in trajectory(model, seeds, cfg.sample):
        label = "start" if level < 0 else ("denoised" if level >= len(model.sigmas) else
                                           f"level {level}: sigma {model.sigmas[level].item():.3g}")
        if x.ndim == 4:
            images = to_uint8(x, logit_transform=model.logit_transform)
            columns.append(images)
            frames.append(grid_image(images, nrow=int(math.ceil(math.sqrt(len(seeds))))))
        else:
            frames.append(scatter_image(x, title=label))
    save_gif(frames, out_dir / "trajectory.gif")
    if columns:
        # Row i: sample i after each level, left to right.
        table = torch.stack(columns, dim=1).flatten(0, 1)
        save_grid(table, out_dir / "trajectory.png", nrow=len(columns))
    else:
        frames[-1].save(out_dir / "trajectory.png")


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Draw ``sample.n_samples`` samples from the trained (or registered) model."""
    from ncsn.distributed import resolve_device

    out_dir = Path(args.out or cfg.paths.sample)
    n_samples = args.n or cfg.sample.n_samples
    if args.model is None:
        model_path = Path(cfg.paths.train) / "model.pt"
    else:
        from ncsn.registry import resolve_model_uri

        model_path = resolve_model_uri(args.model, cfg)
    device = resolve_device(cfg.base.device)
    model = load_for_sampling(model_path, device, cfg.sample)
    if args.model is None:  # the pipeline's own model must fit params.yaml; --model may name any
        check_compatible(model.checkpoint, arch=cfg.model.arch, dataset=cfg.base.dataset, source=model_path)
    for name in _OUTPUTS:  # temporary files of a killed run
        for stale in out_dir.glob(f".{name}.*"):
            stale.unlink(missing_ok=True)
    manifest = {"model_sha256": file_sha256(model_path), "sample": cfg.to_dict()["sample"], "seed": cfg.base.seed}
    shard_dir = out_dir / "shards"
    _reset_if_stale(shard_dir, manifest)
    draw_shards(model, cfg, shard_dir, n_samples)

    samples, _ = read_samples(shard_dir, limit=min(n_samples, 100))
    try:
        if samples.ndim == 4:
            save_grid(samples[:100], out_dir / "grid.png", nrow=10)
        else:
            all_points, _ = read_samples(shard_dir)
            scatter_image(all_points, title=f"{len(all_points)} samples").save(out_dir / "grid.png")
        write_trajectory(model, cfg, out_dir)
    except OSError as err:  # full disk, read-only folder: the shards drawn so far stay valid
        raise CheckpointError(f"cannot write into {out_dir}: {err.strerror or err}") from None
    tracker.log_metrics({
        "n_samples": float(n_samples),
        "sample_eps": sampler_eps(cfg.sample, model.sigmas.tolist(), cfg.sample.n_steps_each),
        "evaluations_per_sample": float(evaluations_per_sample(cfg.sample, len(model.sigmas))),
    })
    for name in ("grid.png", "trajectory.png", "trajectory.gif"):
        tracker.log_artifact(out_dir / name, "samples")
    print(f"{n_samples} samples in {shard_dir}; grid {out_dir / 'grid.png'}")
