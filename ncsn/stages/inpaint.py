"""Inpaint held-out images under several masks (paper Algorithm 2).

Writes ``paths.inpaint/<mask>.png`` (rows: occluded, completed, original),
``paths.inpaint/inpainting.png`` (all masks stacked) and ``results.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ncsn.checkpoint import atomic_save, check_compatible
from ncsn.config import Config
from ncsn.generate import load_for_sampling, to_uint8
from ncsn.images import save_grid
from ncsn.inpaint import inpaint
from ncsn.masks import make_mask
from ncsn.rng import make_generators


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Complete ``inpaint.n_images`` test images under each mask of ``inpaint.masks``."""
    from ncsn.data import load_split
    from ncsn.distributed import resolve_device
    from ncsn.train import preprocess

    out_dir = Path(cfg.paths.inpaint)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.base.device)
    model_path = Path(cfg.paths.train) / "model.pt"
    model = load_for_sampling(model_path, device, cfg.sample)
    check_compatible(model.checkpoint, arch=cfg.model.arch, dataset=cfg.base.dataset, source=model_path)
    test = load_split(cfg.paths.prepare, "test").data[: cfg.inpaint.n_images]
    if test.ndim != 4:
        (out_dir / "SKIPPED.txt").write_text("inpainting applies to image datasets only\n")
        return
    # Clean held-out images in model space (no dequantisation or flips).
    clean = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dequantize=False, flip=False))
    y = preprocess(test, clean, None).to(device)
    n, size = len(y), y.shape[-1]
    rows, results = [], {}
    for k, kind in enumerate(cfg.inpaint.masks):
        mask_gen = torch.Generator().manual_seed(cfg.base.seed + k)
        mask = make_mask(kind, n, size, fraction=cfg.inpaint.random_fraction, generator=mask_gen).to(device)
        generators = make_generators([cfg.base.seed + 10_000 * (k + 1) + i for i in range(n)], device)
        completed = inpaint(model.score(), y, mask, model.sigmas, n_steps_each=cfg.inpaint.n_steps_each,
                            eps=cfg.inpaint.eps, generator=generators, convention=cfg.sample.convention)
        lt = model.logit_transform
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
