"""Validate the self-supervised extractor as FID was validated (Heusel et al. 2017, Section 4).

Usage::

    python bench/validate_ssl_extractor.py --out /tmp/ssl-validation

1. **Disturbances.** On mnist5k (the prepare stage's 4,000 / 1,000 split) and on a folder of
   coloured shapes (``ncsn.data.shapes``, 1,600 / 400 images, 32×32 RGB), the SimCLR encoder of
   the classifier stage (``cpu`` profile settings) is trained on the training images. The FID
   between the training images and the test images, disturbed at levels 0 (none) to 4, must rise
   with the level for each of: Gaussian noise (σ = 16, 32, 64, 128 grey levels), Gaussian blur
   (σ = 0.5, 1, 1.5, 2 px), black rectangles (1-4 squares of a quarter of the side) and
   salt-and-pepper (2, 5, 10, 20 % of the pixels). On mnist5k the digit classifier's FID is
   printed beside it.
2. **Snapshot ranking.** The ``cpu`` profile's network is trained for ``--train-steps`` with a
   snapshot every ``--snapshot-freq``; each snapshot draws ``--n`` samples with the evaluate
   stage's selection sampler (same seeds for all). Spearman's ρ between the snapshots' FIDs in the
   two feature spaces (the issue asks ≥ 0.8).

Prints two tables (Markdown) and writes ``--out/ssl_validation.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor

from ncsn.config import config_from_dict
from ncsn.data import load_split, prepare
from ncsn.data.shapes import shape_image
from ncsn.evaluation.bootstrap import fid_of_features
from ncsn.evaluation.classifier import ImageClassifier, predict, train_classifier
from ncsn.evaluation.selection import draw_samples
from ncsn.evaluation.ssl_encoder import train_ssl_encoder
from ncsn.stages.sampler import resolve_sampler
from ncsn.storage.checkpoint import checkpoint_sigmas, list_checkpoints, load_checkpoint
from ncsn.storage.score_model import load_for_sampling

LEVELS = {
    "gaussian noise": (16.0, 32.0, 64.0, 128.0),
    "gaussian blur": (0.5, 1.0, 1.5, 2.0),
    "black rectangles": (1, 2, 3, 4),
    "salt and pepper": (0.02, 0.05, 0.1, 0.2),
}


def disturb(x: Tensor, kind: str, level: float, generator: torch.Generator) -> Tensor:
    """``x`` (uint8 [N, C, H, W]) with one of Heusel et al.'s disturbances at ``level``."""
    y = x.float()
    n, c, h, w = x.shape
    if kind == "gaussian noise":
        y = y + level * torch.randn(y.shape, generator=generator)
    elif kind == "gaussian blur":
        radius = int(3 * level + 0.5)
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-t ** 2 / (2 * level ** 2))
        k = (k / k.sum()).to(y)
        y = F.pad(y, (radius,) * 4, mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        y = F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    elif kind == "black rectangles":
        side = h // 4
        for _ in range(int(level)):
            top = torch.randint(0, h - side + 1, (n,), generator=generator)
            left = torch.randint(0, w - side + 1, (n,), generator=generator)
            rows = torch.arange(h)[None, :, None]
            cols = torch.arange(w)[None, None, :]
            inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
                      & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))
            y = y.masked_fill(inside[:, None], 0.0)
    elif kind == "salt and pepper":
        u = torch.rand((n, 1, h, w), generator=generator)
        y = torch.where(u < level / 2, 0.0, torch.where(u > 1 - level / 2, 255.0, y))
    else:
        raise ValueError(kind)
    return y.round().clamp(0, 255).to(torch.uint8)


def shapes_split(n_train: int, n_test: int) -> tuple[Tensor, Tensor]:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(np.stack([shape_image(rng) for _ in range(n_train + n_test)]))
    images = images.permute(0, 3, 1, 2).contiguous()
    return images[:n_train], images[n_train:]


def fid_in(net: ImageClassifier) -> Callable[[Tensor, Tensor], float]:
    """FID between two uint8 image sets in ``net``'s penultimate feature space."""
    def fid(a: Tensor, b: Tensor) -> float:
        return fid_of_features(predict(net, a)[1].double(), predict(net, b)[1].double())
    return fid


def disturbance_rows(name: str, train: Tensor, test: Tensor, spaces: dict[str, Callable]) -> list[dict]:
    reference = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:len(test)]]
    rows = []
    for kind, levels in LEVELS.items():
        for space, fid in spaces.items():
            gen = torch.Generator().manual_seed(1)
            values = [fid(reference, test)] + [fid(reference, disturb(test, kind, lv, gen)) for lv in levels]
            rows.append({"data": name, "extractor": space, "disturbance": kind, "fid": values,
                         "monotone": all(a < b for a, b in zip(values, values[1:]))})
    return rows


def snapshot_ranking(out: Path, prepared: Path, classifier: ImageClassifier, encoder: ImageClassifier,
                     steps: int, freq: int, n: int) -> dict:
    from ncsn.stages.train import train as train_stage

    cfg = config_from_dict({"profile": "cpu", "train": {"n_iters": steps, "snapshot_freq": freq, "val_freq": freq},
                            "tracking": {"enabled": False}})
    train_dir = out / "train"
    start = time.perf_counter()
    train_stage(cfg, prepared, train_dir)
    train_s = time.perf_counter() - start
    test = load_split(prepared, "test").data
    spec = resolve_sampler(cfg.sample, checkpoint_sigmas(load_checkpoint(train_dir / "model.pt")),
                           n_steps_each=cfg.evaluate.select_steps_each)
    seeds = list(range(cfg.base.seed, cfg.base.seed + n))
    rows = []
    for step, path in list_checkpoints(train_dir / "snapshots"):
        samples = draw_samples(load_for_sampling(path, "cpu", cfg.sample), seeds, spec, cfg.sample.batch_size)
        rows.append({"step": step, "classifier_fid": fid_in(classifier)(samples, test),
                     "ssl_fid": fid_in(encoder)(samples, test)})
        print(f"  snapshot {step}: classifier-FID {rows[-1]['classifier_fid']:.2f}, ssl-FID {rows[-1]['ssl_fid']:.2f}")
    rho = spearmanr([r["classifier_fid"] for r in rows], [r["ssl_fid"] for r in rows]).statistic
    return {"snapshots": rows, "spearman": float(rho), "train_seconds": train_s, "n_samples": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/ssl-validation"))
    parser.add_argument("--train-steps", type=int, default=900)
    parser.add_argument("--snapshot-freq", type=int, default=100)
    parser.add_argument("--n", type=int, default=500, help="samples per snapshot")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config_from_dict({"profile": "cpu"})
    prepared = args.out / "prepare"
    if not (prepared / "train.pt").is_file():
        prepare(cfg, prepared)
    mnist = load_split(prepared, "train"), load_split(prepared, "test")
    shapes = shapes_split(1600, 400)

    seconds: dict[str, float] = {}

    def timed(name: str, make: Callable[[], ImageClassifier]) -> ImageClassifier:
        start = time.perf_counter()
        net = make()
        seconds[name] = time.perf_counter() - start
        return net

    ssl_mnist = timed("ssl mnist5k", lambda: train_ssl_encoder(mnist[0].data, cfg.classifier, progress=False))
    ssl_shapes = timed("ssl shapes", lambda: train_ssl_encoder(shapes[0], cfg.classifier, progress=False))
    classifier = timed("classifier mnist5k", lambda: train_classifier(mnist[0].data, mnist[0].labels, cfg.classifier,
                                                                       progress=False))
    rows = disturbance_rows("mnist5k", mnist[0].data, mnist[1].data,
                            {"ssl": fid_in(ssl_mnist), "classifier": fid_in(classifier)})
    rows += disturbance_rows("shapes (folder)", *shapes, {"ssl": fid_in(ssl_shapes)})
    print(f"training seconds: {json.dumps({k: round(v, 1) for k, v in seconds.items()})}")
    print("\n| data | extractor | disturbance | FID at levels 0, 1, 2, 3, 4 | rises |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['extractor']} | {r['disturbance']} | {', '.join(f'{v:.3g}' for v in r['fid'])}"
              f" | {'yes' if r['monotone'] else 'NO'} |")
    ranking = snapshot_ranking(args.out, prepared, classifier, ssl_mnist, args.train_steps, args.snapshot_freq, args.n)
    print(f"\nsnapshot ranking on mnist5k ({len(ranking['snapshots'])} snapshots, {args.n} samples each):"
          f" Spearman rho = {ranking['spearman']:.3f}")
    result = {"disturbances": rows, "ranking": ranking, "encoder_seconds": seconds,
              "threads": torch.get_num_threads(), "settings": dataclasses.asdict(cfg.classifier)}
    (args.out / "ssl_validation.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
