"""Checkpoint selection as in the paper: a fast FID for every training snapshot.

The paper picks its checkpoint by FID on 1,000 samples. For every
``snapshots/ckpt_XXXXXXXX.pt`` we draw ``evaluate.select_samples`` samples with
``evaluate.select_steps_each`` Langevin steps per noise level (the sampler of
``sample.sampler``; with ``sample.eps: auto`` the ε suits that T), from the same seeds
(``base.seed + i``) for every snapshot, so the scores are comparable with each other
(not with the final, longer-sampled evaluation). Beside it, the mean held-out DSM loss
(``ncsn.train.validation_loss``, the paper's "principled model comparison") and its
value per noise level.

``checkpoint_fid.csv``: ``step, fid, dsm_loss, dsm_loss_level_0 … dsm_loss_level_{L-1}, extractor``
(``fid`` is measured with the run's extractor, named in the last column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from ncsn.config import Config
from ncsn.evaluation.extractor import Extractor
from ncsn.evaluation.fidelity import fidelity_metrics
from ncsn.evaluation.json_csv import write_csv
from ncsn.generate import ScoreModel, load_for_sampling, sample_batch, to_uint8


@dataclass(frozen=True)
class SnapshotScore:
    """One row of ``checkpoint_fid.csv``."""

    step: int
    fid: float
    dsm_loss: float
    dsm_loss_levels: tuple[float, ...]


def draw_samples(model: ScoreModel, seeds: list[int], cfg: Config, *, n_steps_each: int) -> Tensor:
    """Samples for ``seeds`` (``sample.sampler``, T = ``n_steps_each``) in batches of ``sample.batch_size``.

    :return: uint8 [N, C, H, W] images (float [N, D] for vector data) on the CPU.
    """
    out = []
    for start in range(0, len(seeds), cfg.sample.batch_size):
        x = sample_batch(model, seeds[start:start + cfg.sample.batch_size], cfg.sample, n_steps_each=n_steps_each)
        out.append(to_uint8(x, logit_transform=model.logit_transform) if x.ndim == 4 else x.float().cpu())
    return torch.cat(out)


def score_snapshots(snapshots: list[tuple[int, Path]], real: Tensor, val: Tensor, extractor: Extractor,
                    cfg: Config, *, device: torch.device | str = "cpu", cache_dir: str | Path | None = None,
                    on_score: Callable[[SnapshotScore], None] | None = None) -> list[SnapshotScore]:
    """Fast FID and held-out DSM loss of every snapshot.

    :param snapshots: ``(step, path)`` pairs (``ncsn.checkpoint.list_checkpoints``).
    :param real: the reference set for FID (the held-out split), uint8 images or float vectors.
    :param val: held-out examples for the DSM loss (``train.val_size`` of them, as in training).
    :param on_score: called after each snapshot (e.g. to log it).
    """
    from ncsn.train import validation_loss

    seeds = list(range(cfg.base.seed, cfg.base.seed + cfg.evaluate.select_samples))
    scores = []
    for step, path in tqdm(snapshots, desc="checkpoint selection", dynamic_ncols=True):
        model = load_for_sampling(path, device, cfg.sample)
        samples = draw_samples(model, seeds, cfg, n_steps_each=cfg.evaluate.select_steps_each)
        fid = fidelity_metrics(samples, real, extractor, isc=False, kid=False, device=device,
                               seed=cfg.base.seed, cache_dir=cache_dir)[extractor.prefix + "fid"]
        per_level = validation_loss(model.net, val, model.sigmas, cfg).cpu()
        score = SnapshotScore(step, fid, float(per_level.mean()), tuple(per_level.tolist()))
        scores.append(score)
        if on_score is not None:
            on_score(score)
    return scores


def best_snapshot(scores: list[SnapshotScore]) -> SnapshotScore:
    """The snapshot with the lowest finite FID (the latest one among ties)."""
    finite = [s for s in scores if math.isfinite(s.fid)]
    if not finite:
        raise ValueError("no snapshot has a finite FID")
    return min(finite, key=lambda s: (s.fid, -s.step))


def write_scores_csv(scores: list[SnapshotScore], path: str | Path, extractor: Extractor) -> None:
    """``checkpoint_fid.csv`` (see module docstring)."""
    n_levels = max((len(s.dsm_loss_levels) for s in scores), default=0)
    header = ["step", "fid", "dsm_loss", *[f"dsm_loss_level_{i}" for i in range(n_levels)], "extractor"]
    rows = [[s.step, s.fid, s.dsm_loss, *s.dsm_loss_levels, extractor.name] for s in scores]
    write_csv(path, header, rows)
