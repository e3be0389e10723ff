"""Sample with the configured sampler (``sample.sampler``): shards on disk, a grid, and the trajectory.

Writes into ``paths.sample`` (or ``--out``)::

    shards/shard_XXXXX.pt   samples and their seeds, ``sample.batch_size`` per shard
    shards/manifest.json    what the shards were drawn from (model file hash, settings, resolved sampler)
    grid.png                the first samples
    trajectory.png          a few samples after every noise level or solver step (rows: samples)
    trajectory.gif          the same as an animation

Sample ``i`` uses seed ``base.seed + i``. Shards are written atomically and only
missing ones are drawn, so a rerun after a crash continues without duplicate or
missing samples; memory stays flat in ``sample.n_samples``.

Under ``torchrun`` the ranks share the missing shards: rank 0 checks the folder (manifest,
damaged shards) and lists what is missing; rank ``r`` draws entries ``r, r + N, …`` of that
list. A shard depends only on its seeds, so the files are the same for any number of ranks.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from ncsn.config import Config
from ncsn.data.progress import progress
from ncsn.stages.devices import resolve_device
from ncsn.stages.distributed import DistInfo, barrier, broadcast_from_main, init_distributed, local_rank, my_share
from ncsn.stages.sampler import SamplerSpec, resolve_sampler, sample_batch, trajectory
from ncsn.storage.checkpoint import file_sha256, load_checkpoint, load_final_model
from ncsn.storage.images import grid_image, save_gif, save_grid, save_image, scatter_image
from ncsn.storage.score_model import ScoreModel, load_for_sampling, to_storage, to_uint8
from ncsn.storage.shards import (SampleError, existing_shards, read_samples, remove_partial_files, reset_if_stale,
                                 shard_holds, shard_seeds, write_shard)

PREVIEWS = ("grid.png", "trajectory.png", "trajectory.gif")
log = logging.getLogger(__name__)


def shard_manifest(model_sha256: str, sample_settings: dict[str, Any], seed: int,
                   spec: SamplerSpec) -> dict[str, Any]:
    """What a run's shards are drawn from: the model file, the ``sample`` section, the seed and the sampler."""
    return {"model_sha256": model_sha256, "sample": sample_settings, "seed": seed, "sampler": spec.to_dict()}


def missing_shards(shard_dir: Path, manifest: dict[str, Any], *, n_samples: int, batch_size: int,
                   seed: int) -> list[int]:
    """Indices of the shards still to draw, after dropping what cannot be kept.

    Shards of another manifest go first; so do those of another sample count, damaged ones and
    temporary files of a killed writer.

    :raises SampleError: when the folder cannot be written.
    """
    reset_if_stale(shard_dir, manifest)
    n_shards = math.ceil(n_samples / batch_size)
    remove_partial_files(shard_dir)
    done = existing_shards(shard_dir)
    for index, path in list(done.items()):
        if index >= n_shards or not shard_holds(path, shard_seeds(seed, index, batch_size, n_samples)):
            path.unlink()
            del done[index]
    return [k for k in range(n_shards) if k not in done]


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"``."""
    runs: list[list[int]] = []
    for k in indices:
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs) or "none"


def draw_shards(model: ScoreModel, spec: SamplerSpec, shard_dir: Path, manifest: dict[str, Any], *,
                n_samples: int, batch_size: int, seed: int, dist: DistInfo = DistInfo()) -> list[int]:
    """Draw every missing shard of ``n_samples`` samples (seeds ``seed``, ``seed + 1``, …) into ``shard_dir``.

    See :func:`missing_shards` for what is kept. With ``dist.world_size`` = N, rank 0 checks
    the folder while the others wait; each rank then draws its share of the missing shards,
    and all return together.

    :return: the indices of the shards this rank drew.
    :raises SampleError: when the folder or a shard cannot be written.
    """
    todo: list[int] | None = None
    if dist.is_main:
        todo = missing_shards(shard_dir, manifest, n_samples=n_samples, batch_size=batch_size, seed=seed)
    todo = broadcast_from_main(todo, dist)  # the others wait for rank 0's check of the folder
    mine = my_share(todo, dist)
    n_shards = math.ceil(n_samples / batch_size)
    start = time.perf_counter()
    if dist.world_size == 1:
        progress_bar = progress(mine, desc="sample shards", initial=n_shards - len(todo), total=n_shards)
    else:
        progress_bar = progress(mine, desc=f"sample shards (rank {dist.rank} of {dist.world_size})")
    for index in progress_bar:
        seeds = shard_seeds(seed, index, batch_size, n_samples)
        write_shard(shard_dir, index, to_storage(sample_batch(model, seeds, spec), model), seeds)
    log.info("rank %d of %d drew %d of %d shards in %.1f s: %s", dist.rank, dist.world_size, len(mine), n_shards,
             time.perf_counter() - start, _ranges(mine))
    barrier(dist)
    return mine


def _write_trajectory(model: ScoreModel, spec: SamplerSpec, seeds: list[int], out_dir: Path) -> None:
    """``trajectory.png`` (row i: sample i after each level) and ``trajectory.gif``."""
    frames, columns = [], []
    for level, x in trajectory(model, seeds, spec):
        label = spec.step_label(level, model.sigmas)
        if x.ndim == 4:
            images = to_uint8(x, logit_transform=model.logit_transform)
            columns.append(images)
            frames.append(grid_image(images, nrow=int(math.ceil(math.sqrt(len(seeds))))))
        else:
            frames.append(scatter_image(x, title=label))
    save_gif(frames, out_dir / "trajectory.gif")
    if columns:
        table = torch.stack(columns, dim=1).flatten(0, 1)
        save_grid(table, out_dir / "trajectory.png", nrow=len(columns))
    else:
        save_image(frames[-1], out_dir / "trajectory.png")


def write_previews(model: ScoreModel, spec: SamplerSpec, shard_dir: Path, out_dir: Path, *,
                   trajectory_seeds: list[int]) -> None:
    """``grid.png`` (the first 100 samples, or a scatter of all points) and the trajectory files.

    :raises SampleError: when ``out_dir`` cannot be written (the shards drawn so far stay valid).
    """
    for name in PREVIEWS:  # temporary files of a killed run
        for stale in out_dir.glob(f".{name}.*"):
            stale.unlink(missing_ok=True)
    samples, _ = read_samples(shard_dir, limit=100)
    try:
        if samples.ndim == 4:
            save_grid(samples[:100], out_dir / "grid.png", nrow=10)
        else:
            all_points, _ = read_samples(shard_dir)
            save_image(scatter_image(all_points, title=f"{len(all_points)} samples"), out_dir / "grid.png")
        _write_trajectory(model, spec, trajectory_seeds, out_dir)
    except OSError as err:
        raise SampleError(f"cannot write into {out_dir}: {err.strerror or err}") from None


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


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Draw ``sample.n_samples`` samples from the trained (or registered) model."""
    out_dir = Path(args.out or cfg.paths.sample)
    n_samples = args.n or cfg.sample.n_samples
    device = resolve_device(cfg.base.device, local_rank())
    dist = init_distributed(device)
    if args.model is None:  # the pipeline's own model must fit params.yaml; --model may name any
        model_path, ckpt = load_final_model(cfg)
    else:  # rank 0 resolves (and downloads) a registry URI, so every rank samples the same version
        from ncsn.tracking.registry import resolve_model_uri

        model_path = broadcast_from_main(resolve_model_uri(args.model, cfg) if dist.is_main else None, dist)
        ckpt = load_checkpoint(model_path)
    model = load_for_sampling(ckpt, device, cfg.sample)
    spec = resolve_sampler(cfg.sample, model.sigmas)
    shard_dir = out_dir / "shards"
    manifest = shard_manifest(file_sha256(model_path), cfg.to_dict()["sample"], cfg.base.seed, spec)
    draw_shards(model, spec, shard_dir, manifest, n_samples=n_samples, batch_size=cfg.sample.batch_size,
                seed=cfg.base.seed, dist=dist)
    if not dist.is_main:
        return
    write_previews(model, spec, shard_dir, out_dir,
                   trajectory_seeds=list(range(cfg.base.seed, cfg.base.seed + cfg.sample.trajectory_samples)))
    tracker.log_params({f"sampler.{k}": v for k, v in spec.to_dict().items()})
    tracker.log_metrics({"n_samples": float(n_samples), "sample_eps": spec.eps,
                         "evaluations_per_sample": float(spec.evaluations_per_sample)})
    for name in PREVIEWS:
        tracker.log_artifact(out_dir / name, "samples")
    print(f"{n_samples} samples in {shard_dir}; grid {out_dir / 'grid.png'}")
