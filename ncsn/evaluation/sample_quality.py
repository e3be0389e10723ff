"""IS / FID / KID of the samples, and of real data through the same metrics.

:func:`sample_quality_metrics` measures, with one feature extractor:

1. the samples against the held-out split (``{p}is``, ``{p}fid``, ``{p}kid_*``, precision/recall);
2. real data: the IS of the test split (``reference_{p}is_test``), and training images vs test
   images with as many training images as there are samples (``floor_*_train_vs_test``), the best
   a model can expect, since FID and KID depend on the sample count.

``p`` is the extractor's prefix (``""`` Inception, ``classifier_``, ``raw_``).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from ncsn.stages.distributed import DistInfo, barrier
from ncsn.evaluation import EvaluationError
from ncsn.evaluation.extractor import Extractor
from ncsn.evaluation.fidelity import fidelity_metrics


@contextmanager
def fidelity_cache(out_dir: Path, dist: DistInfo = DistInfo()) -> Iterator[Path]:
    """A temporary feature cache inside ``out_dir`` (those of killed runs are removed first).

    Under ``torchrun`` every rank gets its own, once rank 0 has removed the stale ones.

    :raises EvaluationError: when ``out_dir`` cannot be written.
    """
    try:
        if dist.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            for stale in out_dir.glob(".fidelity-cache-*"):  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
        barrier(dist)
        cache_dir = Path(tempfile.mkdtemp(dir=out_dir, prefix=".fidelity-cache-"))
    except OSError as err:
        raise EvaluationError(f"cannot write {out_dir}: {err.strerror or err}") from None
    try:
        yield cache_dir
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def sample_quality_metrics(samples: Tensor, train: Tensor, test: Tensor, extractor: Extractor, *,
                           device: torch.device, kid_subset_size: int, seed: int,
                           cache_dir: Path, dist: DistInfo = DistInfo()) -> dict[str, Any]:
    """The metrics of the samples and of real data (see the module docstring).

    :param samples: [N, ...] uint8 images or float points.
    :param train: / :param test: the prepared splits, the same kind as ``samples``.
    :param seed: seeds KID's subsets and the choice of the floor's training images.
    :param dist: the ranks that share the feature extraction (each with its own ``cache_dir``).
    """
    p = extractor.prefix
    metrics: dict[str, Any] = {"extractor": extractor.name, "note": extractor.note}
    if extractor.weights_sha256:
        metrics["extractor_weights_sha256"] = extractor.weights_sha256
    metrics |= {"n_samples": len(samples), "n_test": len(test), "n_train": len(train)}
    common = dict(device=device, kid_subset_size=kid_subset_size, seed=seed, cache_dir=cache_dir, dist=dist)
    metrics |= fidelity_metrics(samples, test, extractor, prc=True, **common)
    if extractor.has_is:
        ref = fidelity_metrics(test, None, extractor, fid=False, kid=False, **common)
        metrics[f"reference_{p}is_test"] = ref[f"{p}is"]
    n_floor = min(len(samples), len(train))
    floor_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_floor]
    floor = fidelity_metrics(train[floor_idx], test, extractor, isc=False, prc=True, **common)
    metrics |= {f"floor_{k}_train_vs_test": v for k, v in floor.items() if not k.endswith("kid_subset_size")}
    metrics["n_floor_train"] = n_floor
    return metrics
