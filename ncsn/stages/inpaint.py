"""Inpaint held-out images under several masks (paper Algorithm 2).

Writes ``paths.inpaint/<mask>.png`` (rows: occluded, completed, original),
``paths.inpaint/inpainting.png`` (all masks stacked) and ``results.pt``. The sampler is
``sample.*`` with the overrides ``inpaint.sampler``, ``inpaint.n_steps_each`` and
``inpaint.eps`` (``auto``: NCSNv2 technique 4), without a denoising step.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ncsn.checkpoint import atomic_save, load_final_model
from ncsn.config import Config
from ncsn.data import load_split
from ncsn.data.transforms import preprocess
from ncsn.devices import resolve_device
from ncsn.images import save_grid
from ncsn.inpaint import inpaint
from ncsn.masks import make_mask
from ncsn.rng import make_generators
from ncsn.sampler_spec import resolve_sampler
from ncsn.score_model import load_for_sampling, to_uint8


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Complete ``inpaint.n_images`` test images under each mask of ``inpaint.masks``."""
    out_dir = Path(cfg.paths.inpaint)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.base.device)
    _, ckpt = load_final_model(cfg)
    model = load_for_sampling(ckpt, device, cfg.sample)
    test = load_split(cfg.paths.prepare, "test").data[: cfg.inpaint.n_images]
    if test.ndim != 4:
        (out_dir / "SKIPPED.txt").write_text("inpainting applies to image datasets only\n")
        return
    ic = cfg.inpaint
    spec = resolve_sampler(cfg.sample, model.sigmas, sampler=ic.sampler, n_steps_each=ic.n_steps_each, eps=ic.eps,
                           denoise=False)
    tracker.log_params({f"inpaint_sampler.{k}": v for k, v in spec.to_dict().items()})
    # Clean held-out images in model space (no dequantisation or flips).
    clean = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dequantize=False, flip=False))
    y = preprocess(test, clean, None).to(device)
    n, lt = len(y), model.logit_transform
    rows, results = [], {}
    for k, kind in enumerate(ic.masks):
        mask_gen = torch.Generator().manual_seed(cfg.base.seed + k)
        mask = make_mask(kind, n, y.shape[-1], fraction=ic.random_fraction, generator=mask_gen).to(device)
        generators = make_generators([cfg.base.seed + 10_000 * (k + 1) + i for i in range(n)], device)
        completed = inpaint(model.score(), y, mask, model.sigmas, sampler=spec.sampler, n_steps_each=spec.n_steps_each,
                            eps=spec.eps, convention=spec.convention, denoise=spec.denoise, generator=generators)
        occluded = to_uint8(y, logit_transform=lt) * mask.cpu().to(torch.uint8)
        grid = torch.cat([occluded, to_uint8(completed, logit_transform=lt), to_uint8(y, logit_transform=lt)])
        save_grid(grid, out_dir / f"{kind}.png", nrow=n)
        rows.append(grid)
        results[kind] = {"mask": mask.cpu(), "completed": completed.cpu()}
        hidden = (1 - mask).expand_as(y)
        mse = (((completed - y) ** 2) * hidden).sum() / hidden.sum().clamp_min(1)
        tracker.log_metrics({f"inpaint_mse_{kind}": mse.item()})
        tracker.log_artifact(out_dir / f"{kind}.png", "inpainting")
    save_grid(torch.cat(rows), out_dir / "inpainting.png", nrow=n)
    atomic_save({"originals": y.cpu(), **{f"{k}_{f}": v[f] for k, v in results.items() for f in v}},
                out_dir / "results.pt")
    tracker.log_artifact(out_dir / "inpainting.png", "inpainting")
    print(f"inpainting grids in {out_dir}")
