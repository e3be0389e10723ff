"""Extractor features computed by N ranks at once and combined into torch-fidelity's feature cache.

torch-fidelity extracts features batch by batch (``batch_size`` images in input order) and
caches them per input as ``{cache name}-{extractor}-features-{layer}.pt``. Here the batches
are split across ranks (batch ``k`` on rank ``k mod N``, ``ncsn.stages.distributed.map_chunks``),
gathered in order and written under those same names in each rank's cache folder. The
metric call that follows finds every feature cached and computes IS / FID / KID with
torch-fidelity's own code, from the very tensors one process would have extracted: each
batch holds the same images as in one process.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset
from torch_fidelity.utils_torch import torch_atomic_save

from ncsn.stages.distributed import DistInfo, map_chunks
from ncsn.evaluation.extractor import Extractor, ensure_registered


def feature_layers(extractor: Extractor) -> list[str]:
    """Every layer the metrics read from ``extractor``: IS's (when it has one), FID/KID/precision-recall's."""
    ensure_registered()
    cls = FEATURE_EXTRACTORS_REGISTRY[extractor.name]
    metrics = ("isc", "fid", "kid", "prc") if extractor.has_is else ("fid", "kid", "prc")
    return sorted({cls.get_default_feature_layer_for_metric(m) for m in metrics})


def feature_cache_path(cache_dir: str | Path, cache_name: str, extractor: Extractor, layer: str) -> Path:
    """Where torch-fidelity looks for the cached ``layer`` features of the input named ``cache_name``."""
    return Path(cache_dir) / f"{cache_name}-{extractor.name}-features-{layer}.pt"


def extract_features(data: Tensor, extractor: Extractor, *, batch_size: int, device: torch.device,
                     dist: DistInfo) -> dict[str, Tensor]:
    """The features of ``data`` for every layer of :func:`feature_layers`, the batches shared among ranks.

    :param data: uint8 images [N, C, H, W] or float vectors [N, D].
    :param batch_size: torch-fidelity's ``batch_size`` (the batches are those of one process).
    :return: ``{layer: float [N, F]}`` on the CPU, the same on every rank.
    """
    from ncsn.evaluation.fidelity import TensorSamples

    cuda = device.type == "cuda"
    layers = feature_layers(extractor)
    net = create_feature_extractor(extractor.name, layers, cuda=cuda, verbose=False,
                                   feature_extractor_weights_path=extractor.weights_argument())
    batch = min(batch_size, len(data))

    def one_batch(start: int, stop: int) -> dict[str, Tensor]:
        part = TensorSamples(data[start:stop], rgb=extractor.rgb)
        return get_featuresdict_from_dataset(part, net, batch, cuda, save_cpu_ram=True, verbose=False)

    parts = map_chunks(one_batch, len(data), batch, dist)
    return {layer: torch.cat([p[layer] for p in parts]) for layer in layers}


def cache_features(data: Tensor, cache_name: str, extractor: Extractor, cache_dir: str | Path, *,
                   batch_size: int, device: torch.device, dist: DistInfo) -> None:
    """Put the features of ``data`` into ``cache_dir`` under ``cache_name`` (unless all are there already).

    Every rank must call it with the same arguments (its own ``cache_dir``).
    """
    layers = feature_layers(extractor)
    paths = [feature_cache_path(cache_dir, cache_name, extractor, layer) for layer in layers]
    if all(p.is_file() for p in paths):  # the same on every rank: each rank fills its own folder alike
        return
    features = extract_features(data, extractor, batch_size=batch_size, device=device, dist=dist)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    for layer, path in zip(layers, paths):
        torch_atomic_save(features[layer], str(path))
