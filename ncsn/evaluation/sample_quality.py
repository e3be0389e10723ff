"""IS / FID / KID of the samples, and of real data through the same metrics.

:func:`sample_quality_metrics` measures, with one feature extractor:

1. the samples against the held-out split (``{p}is``, ``{p}fid``, ``{p}kid_*``, precision/recall),
   with a 95 % bootstrap interval for each of IS, FID and KID (``{p}fid_ci95``: [low, high];
   ``ncsn.evaluation.bootstrap``);
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
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ncsn.stages.distributed import DistInfo, barrier
from ncsn.evaluation import EvaluationError
from ncsn.evaluation.extractor import Extractor
from ncsn.evaluation.bootstrap import bootstrap_intervals
from ncsn.evaluation.distributed_features import extract_features, feature_cache_path, feature_layers
from ncsn.evaluation.fidelity import content_name, fidelity_metrics


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
                           cache_dir: Path, bootstrap_resamples: int = 0, seed_sets: int = 1,
                           dist: DistInfo = DistInfo()) -> dict[str, Any]:
    """The metrics of the samples and of real data (see the module docstring).

    :param samples: [N, ...] uint8 images or float points.
    :param train: / :param test: the prepared splits, the same kind as ``samples``.
    :param seed: seeds KID's subsets, the choice of the floor's training images and the bootstrap.
    :param bootstrap_resamples: resamples of each interval (0: no intervals).
    :param seed_sets: k > 1 also gives the FID of k disjoint sets of the samples (sample i was drawn
        from seed base + i, so these are k disjoint seed sets), their minimum and mean, as EDM reports.
    :param dist: the ranks that share the feature extraction (each with its own ``cache_dir``).
    """
    p = extractor.prefix
    metrics: dict[str, Any] = {"extractor": extractor.name, "note": extractor.note}
    if extractor.weights_sha256:
        metrics["extractor_weights_sha256"] = extractor.weights_sha256
    metrics |= {"n_samples": len(samples), "n_test": len(test), "n_train": len(train)}
    common = dict(device=device, kid_subset_size=kid_subset_size, seed=seed, cache_dir=cache_dir, dist=dist)
    metrics |= fidelity_metrics(samples, test, extractor, prc=True, **common)
    if bootstrap_resamples and dist.is_main:
        metrics |= _intervals(samples, test, extractor, cache_dir, kid_subset_size=kid_subset_size, seed=seed,
                              resamples=bootstrap_resamples, device=device)
        metrics["bootstrap_resamples"] = bootstrap_resamples
    if seed_sets > 1:
        metrics |= _seed_set_fids(samples, test, extractor, seed_sets, common)
    if extractor.has_is:
        ref = fidelity_metrics(test, None, extractor, fid=False, kid=False, **common)
        metrics[f"reference_{p}is_test"] = ref[f"{p}is"]
    n_floor = min(len(samples), len(train))
    floor_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n_floor]
    floor = fidelity_metrics(train[floor_idx], test, extractor, isc=False, prc=True, **common)
    metrics |= {f"floor_{k}_train_vs_test": v for k, v in floor.items() if not k.endswith("kid_subset_size")}
    metrics["n_floor_train"] = n_floor
    return metrics


def _intervals(samples: Tensor, test: Tensor, extractor: Extractor, cache_dir: Path, *, kid_subset_size: int,
               seed: int, resamples: int, device: torch.device) -> dict[str, list[float]]:
    """The bootstrap intervals, from the features the metrics just cached (extracted again if absent)."""
    layers = feature_layers(extractor)

    def features(data: Tensor) -> dict[str, Tensor]:
        paths = [feature_cache_path(cache_dir, content_name(data, extractor), extractor, layer) for layer in layers]
        if all(path.is_file() for path in paths):
            return {layer: torch.load(path, weights_only=True) for layer, path in zip(layers, paths)}
        return extract_features(data, extractor, batch_size=500, device=device, dist=DistInfo())

    cls = FEATURE_EXTRACTORS_REGISTRY[extractor.name]
    isc_layer = cls.get_default_feature_layer_for_metric("isc") if extractor.has_is else None
    return bootstrap_intervals(features(samples), features(test), prefix=extractor.prefix,
                               fid_layer=cls.get_default_feature_layer_for_metric("fid"), isc_layer=isc_layer,
                               kid_subset_size=kid_subset_size, resamples=resamples, seed=seed)


def _seed_set_fids(samples: Tensor, test: Tensor, extractor: Extractor, k: int,
                   common: dict[str, Any]) -> dict[str, Any]:
    """``{p}fid_seed_sets``: the FID of each of k disjoint, equal sets of the samples; their min and mean."""
    p, size = extractor.prefix, len(samples) // k
    if size < 2:
        raise EvaluationError(f"evaluate.seed_sets = {k} leaves {size} of {len(samples)} samples per set;"
                              " lower it or draw more samples (sample.n_samples)")
    fids = [fidelity_metrics(samples[i * size:(i + 1) * size], test, extractor, isc=False, kid=False,
                             **common)[f"{p}fid"] for i in range(k)]
    return {f"{p}fid_seed_sets": fids, f"{p}fid_seed_sets_min": min(fids),
            f"{p}fid_seed_sets_mean": sum(fids) / k, "seed_set_samples": size}
