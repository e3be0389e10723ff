"""IS / FID / KID / precision-recall of tensors through ``torch_fidelity.calculate_metrics``.

Images go in as the uint8 tensors the sample stage stored: no PNG/JPEG round trip, no
rescaling. Grayscale is repeated to 3 channels only for an extractor that needs RGB
(Inception). Every number comes back under a key that names its feature space::

    {prefix}is, {prefix}is_std         Inception Score of ``generated`` (10 splits)
    {prefix}fid                        Fréchet distance between ``generated`` and ``real``
    {prefix}kid_mean, {prefix}kid_std  Kernel distance (polynomial kernel, subsets)
    {prefix}precision, {prefix}recall  Kynkäänniemi et al. (k = 3), when asked and both sets
                                       hold at most ``PRC_MAX_SAMPLES``

with ``prefix`` = "" (Inception), "classifier_" or "raw_" (see ``ncsn.evaluation.extractor``),
plus the settings that shape them: ``{prefix}is_splits``, ``{prefix}kid_subset_size``.

Under ``torchrun`` the ranks extract the features together
(``ncsn.evaluation.distributed_features``) and every rank gets the numbers of one process.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset

from ncsn.stages.distributed import DistInfo
from ncsn.evaluation.extractor import Extractor, ensure_registered

_KEYS = {
    torch_fidelity.KEY_METRIC_ISC_MEAN: "is",
    torch_fidelity.KEY_METRIC_ISC_STD: "is_std",
    torch_fidelity.KEY_METRIC_FID: "fid",
    torch_fidelity.KEY_METRIC_KID_MEAN: "kid_mean",
    torch_fidelity.KEY_METRIC_KID_STD: "kid_std",
    torch_fidelity.KEY_METRIC_PRECISION: "precision",
    torch_fidelity.KEY_METRIC_RECALL: "recall",
    torch_fidelity.KEY_METRIC_F_SCORE: "f_score",
}
PRC_NEIGHBOURHOOD = 3
PRC_MAX_SAMPLES = 10_000  # precision/recall compare all pairs (O(N²) memory and time): skipped above this


class TensorSamples(Dataset):
    """Items of a stored tensor, as torch-fidelity reads a ``Dataset``.

    :param data: uint8 images [N, C, H, W] or float vectors [N, D].
    :param rgb: repeat 1-channel images to 3 channels (a view, no copy).
    """

    def __init__(self, data: Tensor, *, rgb: bool = False) -> None:
        if data.ndim == 4 and data.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 [N, C, H, W], got {data.dtype}")
        if data.ndim not in (2, 4):
            raise ValueError(f"expected images [N, C, H, W] or vectors [N, D], got {tuple(data.shape)}")
        self.data = data
        self.rgb = rgb and data.ndim == 4 and data.shape[1] == 1

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Tensor:
        x = self.data[i]
        return x.expand(3, -1, -1) if self.rgb else x


def content_name(data: Tensor, extractor: Extractor) -> str:
    """A cache name that changes with the tensor's content (so a cache can never go stale)."""
    digest = hashlib.sha256(data.contiguous().cpu().numpy().tobytes())
    digest.update(f"{tuple(data.shape)}{data.dtype}{extractor.rgb}".encode())
    return f"ncsn-{digest.hexdigest()[:24]}"


def fidelity_metrics(generated: Tensor, real: Tensor | None, extractor: Extractor, *, isc: bool = True,
                     fid: bool = True, kid: bool = True, prc: bool = False,
                     device: torch.device | str = "cpu", kid_subset_size: int = 1000, seed: int = 2020,
                     batch_size: int | None = None, cache_dir: str | Path | None = None,
                     dist: DistInfo = DistInfo()) -> dict[str, float]:
    """Metrics of ``generated`` against ``real`` with one feature extractor.

    :param generated: uint8 [N, C, H, W] images (or float [N, D] vectors for the raw extractor).
    :param real: the reference set, same layout; needed for FID/KID/precision-recall.
    :param isc: Inception Score (skipped for extractors without class logits).
    :param kid_subset_size: KID subset size, lowered to the smaller set's size when needed.
    :param seed: torch-fidelity's ``rng_seed`` (IS split shuffling, KID subsets).
    :param cache_dir: where torch-fidelity may cache features, keyed by content; it must
        not outlive the extractor's weights (a stage uses a temporary folder), and is each rank's own.
    :param dist: the ranks that share the feature extraction; all of them must call this alike.
    :return: ``{prefix + short name: value}`` (see module docstring).
    """
    ensure_registered()
    isc = isc and extractor.has_is
    if (fid or kid or prc) and real is None:
        raise ValueError("FID, KID and precision/recall need a real reference set")
    sizes = [len(generated)] + ([len(real)] if real is not None else [])
    kid_size = min([kid_subset_size, *sizes])
    kid = kid and kid_size >= 2
    prc = prc and PRC_NEIGHBOURHOOD + 1 < min(sizes) and max(sizes) <= PRC_MAX_SAMPLES
    if not (isc or fid or kid or prc):
        return {}
    device = torch.device(device)
    if dist.world_size > 1 and cache_dir is None:  # the ranks hand their features over through a cache
        with tempfile.TemporaryDirectory(prefix="ncsn-fidelity-") as tmp:
            return fidelity_metrics(generated, real, extractor, isc=isc, fid=fid, kid=kid, prc=prc, device=device,
                                    kid_subset_size=kid_subset_size, seed=seed, batch_size=batch_size,
                                    cache_dir=tmp, dist=dist)
    kwargs = dict(
        input1=TensorSamples(generated, rgb=extractor.rgb),
        isc=isc, fid=fid, kid=kid, prc=prc,
        feature_extractor=extractor.name,
        feature_extractor_weights_path=extractor.weights_argument(),
        cuda=device.type == "cuda",
        batch_size=batch_size or (64 if extractor.kind == "inception" else 500),
        isc_splits=max(1, min(10, len(generated))),
        kid_subset_size=kid_size,
        prc_neighborhood=PRC_NEIGHBOURHOOD,
        rng_seed=seed,
        datasets_download=False,
        save_cpu_ram=True,  # num_workers=0: the data are in memory already; workers would only fork
        cache=cache_dir is not None,
        verbose=False,
    )
    if real is not None:
        kwargs["input2"] = TensorSamples(real, rgb=extractor.rgb)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        kwargs["cache_root"] = str(cache_dir)
        kwargs["input1_cache_name"] = content_name(generated, extractor)
        if real is not None:
            kwargs["input2_cache_name"] = content_name(real, extractor)
    if dist.world_size > 1:
        from ncsn.evaluation.distributed_features import cache_features

        for data, key in ((generated, "input1_cache_name"), (real, "input2_cache_name")):
            if data is not None:
                cache_features(data, kwargs[key], extractor, cache_dir, batch_size=kwargs["batch_size"],
                               device=device, dist=dist)
    raw = torch_fidelity.calculate_metrics(**kwargs)
    out = {extractor.prefix + _KEYS[k]: float(v) for k, v in raw.items() if k in _KEYS}
    if isc:
        out[extractor.prefix + "is_splits"] = float(kwargs["isc_splits"])
    if kid:
        out[extractor.prefix + "kid_subset_size"] = float(kid_size)
    return out
