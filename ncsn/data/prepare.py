"""The prepare stage: load the configured dataset, split it, store it, describe it.

``prepare(cfg, out_dir)`` writes, each file atomically::

    out_dir/train.pt     {"data": uint8 [N, C, H, W] (gmm: float32 [N, 2]), "labels": int64 [N]?}
    out_dir/test.pt      the same for the held-out split
    out_dir/stats.json   see :func:`prepare`

Splits: MNIST, Fashion-MNIST, CIFAR-10 and CelebA keep their official train/test partitions; mnist5k,
gmm and folder are split by :func:`ncsn.data.split.split_indices` seeded with
``data.split_seed`` (folder: at most a fifth held out, see ``folder_test_size``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ncsn.config import Config
from ncsn.data import io
from ncsn.data.errors import DataError
from ncsn.data.io import PreparedSplit
from ncsn.data.split import folder_test_size, split_indices
from ncsn.data.stats import channel_mean_std, num_levels_suggestion, sigma_begin_suggestion
from ncsn.data.transforms import resize_images

log = logging.getLogger(__name__)

NATIVE_SIZE = {"mnist5k": 28, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "celeba": 32}
NATIVE_CHANNELS = {"mnist5k": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3, "celeba": 3}


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset split into train and test, ready to store.

    :param split: how the split was made (``{"kind": "official"}`` or seed + test indices).
    :param source: where the data came from (a file, a folder, or a generator).
    """

    train: PreparedSplit
    test: PreparedSplit
    split: dict[str, Any]
    source: str


def _seeded_split(data: Tensor, labels: Tensor | None, n_test: int, seed: int, source: str) -> LoadedDataset:
    train_idx, test_idx = split_indices(data.shape[0], n_test, seed)

    def take(idx: Tensor) -> PreparedSplit:
        return PreparedSplit(data[idx], None if labels is None else labels[idx])

    split = {"kind": "seeded", "seed": seed, "n_test": n_test, "test_indices": test_idx.tolist()}
    return LoadedDataset(take(train_idx), take(test_idx), split, source)


def _official(train: Tensor, train_labels: Tensor | None, test: Tensor, test_labels: Tensor | None,
              source: Path, image_size: int | None) -> LoadedDataset:
    if image_size is not None:
        train, test = resize_images(train, image_size), resize_images(test, image_size)
    return LoadedDataset(PreparedSplit(train, train_labels), PreparedSplit(test, test_labels),
                         {"kind": "official"}, str(source))


def load_dataset(cfg: Config) -> LoadedDataset:
    """Read and split ``cfg.base.dataset`` according to ``cfg.data`` (and ``base.seed`` for gmm)."""
    name, d = cfg.base.dataset, cfg.data
    if name in NATIVE_CHANNELS and d.channels not in (None, NATIVE_CHANNELS[name]):
        raise DataError(f"data.channels = {d.channels} does not fit dataset '{name}' "
                        f"({NATIVE_CHANNELS[name]} channel(s)); set data.channels: null (it is for dataset 'folder')")
    if name == "mnist5k":
        from ncsn.data.mnist5k import load_mnist5k, mnist5k_path

        path = mnist5k_path()
        images, labels = load_mnist5k(path)
        if d.image_size is not None:
            images = resize_images(images, d.image_size)
        return _seeded_split(images, labels, d.n_test, d.split_seed, str(path))
    elif name in ("mnist", "fashion_mnist"):
        from ncsn.data.idx import IDX_DATASETS, load_idx_dataset

        return _official(*load_idx_dataset(name, d.root, download=d.download),
                         IDX_DATASETS[name].raw_folder(d.root), d.image_size)
    elif name == "cifar10":
        from ncsn.data.torchvision_sets import CIFAR10_FOLDER, load_cifar10

        return _official(*load_cifar10(d.root, download=d.download), Path(d.root) / CIFAR10_FOLDER, d.image_size)
    elif name == "celeba":
        from ncsn.data.torchvision_sets import load_celeba

        size = d.image_size or NATIVE_SIZE["celeba"]
        return _official(*load_celeba(d.root, image_size=size, download=d.download), Path(d.root) / "celeba", None)
    elif name == "folder":
        from ncsn.data.folder import load_folder

        assert d.folder, "config validation requires data.folder for dataset 'folder'"
        images, _ = load_folder(d.folder, image_size=d.image_size, channels=d.channels)
        try:
            n_test = folder_test_size(images.shape[0], d.n_test)
        except DataError as err:
            raise DataError(f"{d.folder}: {err}") from None
        return _seeded_split(images, None, n_test, d.split_seed, d.folder)
    elif name == "gmm":
        from ncsn.data.gmm import sample_gmm

        points = sample_gmm(d.gmm_samples + d.n_test, cfg.base.seed)
        return _seeded_split(points, None, d.n_test, d.split_seed,
                             f"ncsn.core.toy.paper_mixture() sampled with base.seed = {cfg.base.seed}")
    raise DataError(f"unknown dataset {name!r}")


def compute_stats(cfg: Config, dataset: LoadedDataset) -> dict[str, Any]:
    """The contents of ``stats.json`` (see :func:`prepare`)."""
    from ncsn.stages.devices import resolve_device

    train = dataset.train.data
    shape = list(train.shape[1:])
    dim = math.prod(shape)
    mean, std = channel_mean_std(train)
    sigma_begin = sigma_begin_suggestion(train, resolve_device(cfg.base.device))
    return {
        "dataset": cfg.base.dataset,
        "source": dataset.source,
        "n_train": len(dataset.train),
        "n_test": len(dataset.test),
        "shape": shape,
        "dim": dim,
        "has_labels": dataset.train.labels is not None,
        "mean": mean,
        "std": std,
        "sigma_begin_suggestion": sigma_begin,
        "num_levels_suggestion": num_levels_suggestion(dim, sigma_begin, cfg.model.sigma_end),
        "sigma_end": cfg.model.sigma_end,
        "split": dataset.split,
    }


def prepare(cfg: Config, out_dir: str | Path) -> dict[str, Any]:
    """Write ``train.pt``, ``test.pt`` and ``stats.json`` for ``cfg.base.dataset`` into ``out_dir``.

    ``stats.json`` holds: ``dataset``, ``source``, ``n_train``, ``n_test``, ``shape`` ([C, H, W]
    or [2]), ``dim`` (D), ``has_labels``, per-channel ``mean`` and ``std`` of the training split
    in [0, 1] pixel space (gmm: per coordinate), ``sigma_begin_suggestion`` (NCSNv2 technique 1
    over the whole training split), ``num_levels_suggestion`` (technique 2 from that σ₁ to
    ``sigma_end`` = ``model.sigma_end``; null when undefined), and ``split`` (``{"kind":
    "official"}`` or ``{"kind": "seeded", "seed", "n_test", "test_indices"}``, indices into the
    source order).

    :return: the stats dict.
    :raises DataError: for missing, corrupt or empty data.
    """
    out_dir = Path(out_dir)
    dataset = load_dataset(cfg)
    log.info("%s: %d train / %d test examples of shape %s", cfg.base.dataset, len(dataset.train),
             len(dataset.test), tuple(dataset.train.data.shape[1:]))
    stats = compute_stats(cfg, dataset)
    io.save_split(out_dir, "train", dataset.train)
    io.save_split(out_dir, "test", dataset.test)
    io.write_stats(out_dir, stats)
    return stats
