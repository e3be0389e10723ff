"""Inpaint held-out images under several masks, or your own images (paper Algorithm 2).

Without ``--images`` (the pipeline's stage): writes ``paths.inpaint/<mask>.png`` (rows:
occluded, completed, original), ``paths.inpaint/inpainting.png`` (all masks stacked) and
``results.pt``, completing ``inpaint.n_images`` test images with the final model.

``--images DIR --masks DIR --out DIR [--model PATH_OR_URI]``: completes the user's PNG images
with their same-named PNG masks (white = observed, black = fill; ``ncsn.storage.user_images``) and writes
``--out/<name>.png`` (observed pixels exactly as given, in the model's channels) and
``--out/grid/side_by_side.png`` (one row per image: observed with the holes grey, completed,
original). Image ``name`` draws from the seed ``base.seed + crc32(name)``, so its completion is
the same whatever other images are there. The model is the final one, or ``--model`` (a path
or a registry URI, as ``ncsn sample --model``).

Either way the sampler is ``sample.*`` with the overrides ``inpaint.sampler``,
``inpaint.n_steps_each`` and ``inpaint.eps`` (``auto``: NCSNv2 technique 4), without a
denoising step, its correctors at every level (not only ``sample.corrector_sigmas``': the
constraint needs them to blend the completion into the observed pixels). Under ``torchrun --nproc_per_node N -m ncsn inpaint`` the pipeline's stage
splits the images among the ranks and rank 0 writes.
"""

from __future__ import annotations

import argparse
import math
import zlib
from pathlib import Path

import torch

from ncsn.storage.checkpoint import atomic_save, load_checkpoint, load_final_model
from ncsn.config import Config
from ncsn.data import load_split
from ncsn.data.transforms import preprocess
from ncsn.stages.devices import resolve_device
from ncsn.stages.distributed import DistInfo, init_distributed, local_rank, map_chunks
from ncsn.storage.images import save_grid, save_png
from ncsn.core.masks import make_mask
from ncsn.core.rng import make_generators
from ncsn.stages.sampler import SamplerSpec, complete, inpaint_pixels, resolve_inpaint_sampler
from ncsn.storage.score_model import ScoreModel, load_for_sampling, to_uint8
from ncsn.storage.tables import write_text
from ncsn.storage.user_images import ImageInputError, read_pairs
from ncsn.data.progress import progress

USER_OPTIONS = ("masks", "out", "model")  # only with --images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", default=None, metavar="DIR", help="folder of your PNG images to complete (default: the"
                        " pipeline's held-out images)")
    parser.add_argument("--masks", default=None, metavar="DIR", help="folder of PNG masks named as the images: white = observed,"
                        " black = fill (with --images)")
    parser.add_argument("--out", default=None, metavar="DIR", help="folder for the completions (with --images)")
    parser.add_argument("--model", default=None, metavar="PATH_OR_URI", help="checkpoint path or registry URI such as"
                        " models:/ncsn-mnist5k@champion (with --images; default: paths.train/model.pt)")


def _complete(model: ScoreModel, spec: SamplerSpec, y: torch.Tensor, mask: torch.Tensor, seeds: list[int],
              dist: DistInfo) -> torch.Tensor:
    """Algorithm 2 for the images ``y`` [n, C, H, W] under ``mask`` ([n or 1, 1, H, W]), image i from ``seeds[i]``.

    Under ``torchrun`` the ranks take contiguous chunks of the images (``ncsn.stages.distributed.map_chunks``)
    and every rank gets all completions; one process completes them in one batch.

    :return: [n, C, H, W] completions on ``y``'s device.
    """
    def chunk(start: int, stop: int) -> torch.Tensor:
        part_mask = mask[start:stop] if len(mask) == len(y) else mask
        generators = make_generators(seeds[start:stop], y.device)
        return complete(model, spec, y[start:stop], part_mask, generators).cpu()

    size = math.ceil(len(y) / dist.world_size)
    return torch.cat(map_chunks(chunk, len(y), size, dist)).to(y.device)


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Complete ``inpaint.n_images`` test images under each mask of ``inpaint.masks``, or ``--images``."""
    if getattr(args, "images", None) is not None:
        return run_user_images(cfg, tracker, args)
    given = [f"--{name}" for name in USER_OPTIONS if getattr(args, name, None) is not None]
    if given:
        raise ImageInputError(f"{', '.join(given)} only work with --images DIR; add --images or leave them out")
    out_dir = Path(cfg.paths.inpaint)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.base.device, local_rank())
    dist = init_distributed(device)
    _, ckpt = load_final_model(cfg)
    model = load_for_sampling(ckpt, device, cfg.sample)
    test = load_split(cfg.paths.prepare, "test").data[: cfg.inpaint.n_images]
    if test.ndim != 4:
        write_text(out_dir / "SKIPPED.txt", "inpainting applies to image datasets only\n")
        return
    ic = cfg.inpaint
    spec = resolve_inpaint_sampler(cfg, model.sigmas)
    tracker.log_params({f"inpaint_sampler.{k}": v for k, v in spec.to_dict().items()})
    # Clean held-out images in model space (no dequantisation or flips).
    y = preprocess(test, None, dequantize=False, logit_transform=cfg.data.logit_transform, flip=False).to(device)
    n, lt = len(y), model.logit_transform
    rows, results = [], {}
    for k, kind in enumerate(ic.masks):
        mask_gen = torch.Generator().manual_seed(cfg.base.seed + k)
        mask = make_mask(kind, n, y.shape[-1], fraction=ic.random_fraction, generator=mask_gen).to(device)
        seeds = [cfg.base.seed + 10_000 * (k + 1) + i for i in range(n)]
        completed = _complete(model, spec, y, mask, seeds, dist)
        if not dist.is_main:
            continue
        occluded = to_uint8(y, logit_transform=lt) * mask.cpu().to(torch.uint8)
        grid = torch.cat([occluded, to_uint8(completed, logit_transform=lt), to_uint8(y, logit_transform=lt)])
        save_grid(grid, out_dir / f"{kind}.png", nrow=n)
        rows.append(grid)
        results[kind] = {"mask": mask.cpu(), "completed": completed.cpu()}
        hidden = (1 - mask).expand_as(y)
        mse = (((completed - y) ** 2) * hidden).sum() / hidden.sum().clamp_min(1)
        tracker.log_metrics({f"inpaint_mse_{kind}": mse.item()})
        tracker.log_artifact(out_dir / f"{kind}.png", "inpainting")
    if not dist.is_main:
        return
    save_grid(torch.cat(rows), out_dir / "inpainting.png", nrow=n)
    atomic_save({"originals": y.cpu(), **{f"{k}_{f}": v[f] for k, v in results.items() for f in v}},
                out_dir / "results.pt")
    tracker.log_artifact(out_dir / "inpainting.png", "inpainting")
    print(f"inpainting grids in {out_dir}")


def run_user_images(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Complete every PNG of ``--images`` under its mask from ``--masks``, into ``--out``."""
    for name in ("masks", "out"):
        if getattr(args, name, None) is None:
            raise ImageInputError(f"--images needs --{name} DIR too: ncsn inpaint --images DIR --masks DIR --out DIR")
    out_dir = Path(args.out)
    for name in ("images", "masks"):
        if out_dir.resolve() == Path(getattr(args, name)).resolve():
            raise ImageInputError(f"--out {out_dir} is the --{name} folder; write the completions to another folder")
    if args.model is None:
        _, ckpt = load_final_model(cfg)
    else:
        from ncsn.tracking.model_uri import resolve_model_uri

        ckpt = load_checkpoint(resolve_model_uri(args.model, cfg))
    size, channels = ckpt["data"]["image_size"], ckpt["data"]["channels"]
    if not size:
        raise ImageInputError(f"the model was trained on vector data ({ckpt['data']['dataset']!r}); "
                              "--images needs a model of images")
    pairs = read_pairs(args.images, args.masks, channels=channels, image_size=size)
    model = load_for_sampling(ckpt, resolve_device(cfg.base.device), cfg.sample)
    spec = resolve_inpaint_sampler(cfg, model.sigmas)
    tracker.log_params({f"inpaint_sampler.{k}": v for k, v in spec.to_dict().items()})
    rows = []
    for pair in progress(pairs, desc="inpaint", unit="img"):
        seed = cfg.base.seed + zlib.crc32(pair.name.encode())
        completed = inpaint_pixels(model, spec, pair.pixels[None], pair.observed[None], [seed])[0]
        save_png(completed, out_dir / pair.name)
        shown = torch.where(pair.observed, pair.pixels, torch.full_like(pair.pixels, 128))
        rows += [shown, completed, pair.pixels]
    grid = out_dir / "grid" / "side_by_side.png"
    save_grid(torch.stack(rows), grid, nrow=3)
    tracker.log_metrics({"inpaint_user_images": float(len(pairs))})
    tracker.log_artifact(grid, "inpainting")
    print(f"{len(pairs)} completed images in {out_dir}; side by side: {grid}")
