"""Checkpoint selection as in the paper: a fast FID for every training snapshot.

The paper picks its checkpoint by FID on 1,000 samples. For every
``snapshots/ckpt_XXXXXXXX.pt`` we draw ``evaluate.select_samples`` samples with the run's
resolved sampler (``ncsn.stages.sampler``: ``sample.*`` with T = ``evaluate.select_steps_each``;
with ``sample.eps: auto`` the ε suits that T), from the same seeds (``base.seed + i``) for
every snapshot, so the scores are comparable with each other (not with the final,
longer-sampled evaluation). Beside it, the mean held-out DSM loss
(``ncsn.stages.validation.validation_loss``, the paper's "principled model comparison") and its
value per noise level.

``checkpoint_fid.csv``: ``step, fid, dsm_loss, dsm_loss_level_0 … dsm_loss_level_{L-1}, extractor``
(``fid`` is measured with the run's extractor, named in the last column). Without an extractor
(``none``) no samples are drawn, ``fid`` is NaN and the lowest held-out DSM loss selects.

Under ``torchrun`` the ranks share each snapshot's sampling batches and feature extraction
(``ncsn.stages.distributed.map_chunks``); every rank gets the scores of one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ncsn.config import Config
from ncsn.stages.distributed import DistInfo, map_chunks
from ncsn.evaluation.extractor import Extractor
from ncsn.evaluation.fidelity import fidelity_metrics
from ncsn.storage.tables import write_csv
from ncsn.storage.score_model import to_storage
from ncsn.stages.sampler import SamplerSpec, sample_batch
from ncsn.storage.score_model import ScoreModel, load_for_sampling
from ncsn.stages.validation import validation_loss
from ncsn.data.progress import progress


@dataclass(frozen=True)
class SnapshotScore:
    """One row of ``checkpoint_fid.csv``."""

    step: int
    fid: float
    dsm_loss: float
    dsm_loss_levels: tuple[float, ...]


def draw_samples(model: ScoreModel, seeds: list[int], spec: SamplerSpec, batch_size: int,
                 dist: DistInfo = DistInfo()) -> Tensor:
    """Samples for ``seeds`` with the sampler of ``spec``, ``batch_size`` at a time (batch k on rank k mod N).

    :return: uint8 [N, C, H, W] images (float [N, D] for vector data) on the CPU, on every rank.
    """
    def one_batch(start: int, stop: int) -> Tensor:
        return to_storage(sample_batch(model, seeds[start:stop], spec), model)

    return torch.cat(map_chunks(one_batch, len(seeds), batch_size, dist))


def score_snapshots(snapshots: list[tuple[int, Path]], real: Tensor, val: Tensor, extractor: Extractor | None,
                    cfg: Config, spec: SamplerSpec, *, device: torch.device | str = "cpu",
                    cache_dir: str | Path | None = None,
                    on_score: Callable[[SnapshotScore], None] | None = None,
                    dist: DistInfo = DistInfo()) -> list[SnapshotScore]:
    """Fast FID and held-out DSM loss of every snapshot.

    :param snapshots: ``(step, path)`` pairs (``ncsn.storage.checkpoint.list_checkpoints``).
    :param real: the reference set for FID (the held-out split), uint8 images or float vectors.
    :param val: held-out examples for the DSM loss (``train.val_size`` of them, as in training).
    :param extractor: the FID's feature space; None: the DSM loss only (``fid`` is NaN).
    :param spec: the selection sampler (``resolve_sampler(cfg.sample, σ, n_steps_each=evaluate.select_steps_each)``).
    :param on_score: called after each snapshot (e.g. to log it).
    :param dist: the ranks that share the sampling and feature extraction (all call this alike).
    """
    seeds = list(range(cfg.base.seed, cfg.base.seed + cfg.evaluate.select_samples))
    scores = []
    for step, path in progress(snapshots, desc="checkpoint selection", disable=not dist.is_main):
        model = load_for_sampling(path, device, cfg.sample)
        fid = math.nan
        if extractor is not None:
            samples = draw_samples(model, seeds, spec, cfg.sample.batch_size, dist)
            fid = fidelity_metrics(samples, real, extractor, isc=False, kid=False, device=device,
                                   seed=cfg.base.seed, cache_dir=cache_dir, dist=dist)[extractor.prefix + "fid"]
        per_level = validation_loss(model.net, val, model.sigmas, cfg).cpu()
        score = SnapshotScore(step, fid, float(per_level.mean()), tuple(per_level.tolist()))
        scores.append(score)
        if on_score is not None:
            on_score(score)
    return scores


def best_snapshot(scores: list[SnapshotScore]) -> SnapshotScore:
    """The snapshot with the lowest finite FID (the latest one among ties); with no finite FID at
    all (no extractor), the one with the lowest held-out DSM loss."""
    finite = [s for s in scores if math.isfinite(s.fid)]
    if finite:
        return min(finite, key=lambda s: (s.fid, -s.step))
    by_loss = [s for s in scores if math.isfinite(s.dsm_loss)]
    if not by_loss:
        raise ValueError("no snapshot has a finite FID or DSM loss")
    return min(by_loss, key=lambda s: (s.dsm_loss, -s.step))


def write_scores_csv(scores: list[SnapshotScore], path: str | Path, extractor: Extractor | None) -> None:
    """``checkpoint_fid.csv`` (see module docstring)."""
    n_levels = max((len(s.dsm_loss_levels) for s in scores), default=0)
    header = ["step", "fid", "dsm_loss", *[f"dsm_loss_level_{i}" for i in range(n_levels)], "extractor"]
    name = extractor.name if extractor is not None else "none"
    rows = [[s.step, s.fid, s.dsm_loss, *s.dsm_loss_levels, name] for s in scores]
    write_csv(path, header, rows)
