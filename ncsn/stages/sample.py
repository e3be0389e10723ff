"""Sample with the configured sampler (``sample.sampler``): shards on disk, a grid, and the trajectory.

Writes into ``paths.sample`` (or ``--out``)::

    shards/shard_XXXXX.pt   samples and their seeds, ``sample.batch_size`` per shard
    shards/manifest.json    what the shards were drawn from (model file hash, settings, resolved sampler)
    grid.png                the first samples
    trajectory.png          a few samples after every noise level (rows: samples)
    trajectory.gif          the same as an animation

Sample ``i`` uses seed ``base.seed + i``. Shards are written atomically and only
missing ones are drawn, so a rerun after a crash continues without duplicate or
missing samples; memory stays flat in ``sample.n_samples`` (``ncsn.stages.sample_shards``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.storage.checkpoint import file_sha256, load_checkpoint, load_final_model
from ncsn.config import Config
from ncsn.stages.devices import resolve_device
from ncsn.stages.distributed import broadcast_from_main, init_distributed, local_rank
from ncsn.stages.sample_shards import PREVIEWS, draw_shards, shard_manifest, write_previews
from ncsn.stages.sampler import resolve_sampler
from ncsn.storage.score_model import load_for_sampling


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
