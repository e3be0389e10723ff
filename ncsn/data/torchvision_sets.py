"""CIFAR-10 and CelebA in torchvision's on-disk layouts under ``data.root``
(MNIST and Fashion-MNIST: :mod:`ncsn.data.idx`).

==========  ===============================  ================================================
dataset     folder                           files
==========  ===============================  ================================================
cifar10     ``<root>/cifar-10-batches-py``   ``data_batch_1`` … ``data_batch_5``, ``test_batch``
                                             from the official ``cifar-10-python.tar.gz``
celeba      ``<root>/celeba``                ``img_align_celeba/`` and the five ``list_*.txt`` /
                                             ``identity_CelebA.txt`` files
==========  ===============================  ================================================

Each loader returns the official train and test splits as uint8 [N, C, H, W] tensors
(pixels 0–255, i.e. [0, 1] after :func:`ncsn.data.transforms.to_model_input`).
With ``download=True`` torchvision fetches and checksums the files; otherwise missing
files raise one :class:`DataError` naming the folder and how to turn downloading on.

CIFAR-10's batch files are Python pickles (that is how the official archive ships them).
They are read here, not by torchvision's class, with an unpickler that accepts only the
numpy array types the batches contain, so a tampered file cannot run code; torchvision's
MD5 check runs only when downloading.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ncsn.data.errors import DataError
from ncsn.data.progress import progress

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CELEBA_FILES = ("list_eval_partition.txt", "identity_CelebA.txt", "list_attr_celeba.txt",
                "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")
CELEBA_CROP = 140  # paper: centre crop 140×140, then resize

Splits = tuple[Tensor, Tensor | None, Tensor, Tensor | None]  # train images, labels, test images, labels


def how_to_download() -> str:
    """The end of every missing-files message: how to let torchvision fetch the files."""
    return ("or turn downloading on: dvc exp run -S data.download=true "
            "(or set `data.download: true` in params.yaml)")


def missing_files_error(name: str, folder: Path, missing: list[str], expected: str) -> DataError:
    """The error for a dataset whose files are absent and downloading is off."""
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return DataError(f"{name} not found: {folder} is missing {shown}. Put {expected} in {folder}, "
                     f"{how_to_download()}.")


def download_error(name: str, folder: Path, err: BaseException) -> DataError:
    """The error for a failed download: its first line, and how to place the files by hand."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DataError(f"downloading {name} into {folder} failed ({reason}). Download it by hand and put the "
                     f"files in {folder}, then run with data.download=false.")


# ----------------------------------------------------------------------------- CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR-10 batch")
        if module == "numpy.core.multiarray":  # the official files were written by numpy 1.x
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    """One CIFAR-10 python batch: a pickled dict with ``data`` uint8 [n, 3072] (RGB planes,
    row-major 32×32) and ``labels`` (n ints).

    :return: images uint8 [n, 3, 32, 32] and labels int64 [n].
    :raises DataError: when the file is not such a batch.
    """
    try:
        with path.open("rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["labels"], dtype=np.int64).reshape(-1)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path} is not a CIFAR-10 batch ({err}); replace it with the file from the official "
                        f"cifar-10-python.tar.gz, {how_to_download()}.") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def load_cifar10(root: str | Path, *, download: bool) -> Splits:
    """The official 50,000 / 10,000 CIFAR-10 split from ``<root>/cifar-10-batches-py``.

    With ``download`` torchvision fetches the archive and verifies its MD5 sums first.

    :return: images uint8 [N, 3, 32, 32] and labels int64 [N], for train then test.
    """
    folder = Path(root) / CIFAR10_FOLDER
    if download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(root), train=True, download=True)
        except Exception as err:
            raise download_error("CIFAR-10", folder, err) from None
    missing = [n for n in CIFAR10_TRAIN + CIFAR10_TEST if not (folder / n).is_file()]
    if missing:
        raise missing_files_error("CIFAR-10", folder, missing, "data_batch_1..5 and test_batch from "
                                  "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    out: list[Any] = []
    for names in (CIFAR10_TRAIN, CIFAR10_TEST):
        batches = [read_cifar_batch(folder / n) for n in names]
        out += [torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])]
    return tuple(out)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- CelebA
def load_celeba(root: str | Path, *, image_size: int, download: bool) -> Splits:
    """CelebA's official train / test partitions through ``torchvision.datasets.CelebA``,
    each image centre-cropped to 140×140 and resized to ``image_size`` (paper preprocessing).

    :return: images uint8 [N, 3, image_size, image_size] for train and test; no labels.
    """
    from torchvision import transforms as T
    from torchvision.datasets import CelebA

    folder = Path(root) / "celeba"
    missing = [n for n in CELEBA_FILES if not (folder / n).is_file()]
    missing += [] if (folder / "img_align_celeba").is_dir() else ["img_align_celeba/"]
    if missing and not download:
        raise missing_files_error("CelebA", folder, missing, "img_align_celeba/ (from img_align_celeba.zip) and "
                                  + ", ".join(CELEBA_FILES))
    transform = T.Compose([T.CenterCrop(CELEBA_CROP), T.Resize(image_size), T.PILToTensor()])
    out: list[Any] = []
    for split in ("train", "test"):
        try:
            ds = CelebA(str(root), split=split, target_type=[], transform=transform, download=download)
        except Exception as err:  # gdown missing, quota exceeded, md5 mismatch, ...
            raise download_error("CelebA", folder, err) if download else DataError(
                f"CelebA files in {folder} are corrupt ({err}); replace them, {how_to_download()}.") from None
        images = torch.empty(len(ds), 3, image_size, image_size, dtype=torch.uint8)
        for i in progress(range(len(ds)), desc=f"celeba {split}", unit="img", mininterval=2.0):
            images[i] = ds[i][0].expand(3, -1, -1)
        out += [images, None]
    return tuple(out)  # type: ignore[return-value]
