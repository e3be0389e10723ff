"""Tiny stand-ins for datasets in their real on-disk formats (no network needed)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """An IDX file (MNIST's format: big-endian magic 0x0000 08 <ndim>, dims, uint8 data)."""
    assert array.dtype == np.uint8
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist(root: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/MNIST/raw`` as torchvision expects it: training files gzipped, test files raw.

    :return: the arrays written: images [N, 28, 28] uint8 and labels [N] uint8 per split.
    """
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    arrays = {}
    for prefix, n, compress in (("train", n_train, True), ("t10k", n_test, False)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
        arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images, labels
    return arrays


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """A CIFAR-10 python batch: the official archive's pickled dict (protocol 2, like its
    Python 2 files) with ``data`` uint8 [n, 3072] and ``labels``."""
    entry = {"batch_label": path.name, "labels": list(labels), "data": images.reshape(len(images), -1),
             "filenames": [f"img_{i}.png" for i in range(len(images))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` with five small training batches and a test batch.

    :return: images [N, 3, 32, 32] uint8 and labels [N] int64 per split.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    out: dict[str, list[np.ndarray]] = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
    for name, n, split in [*((f"data_batch_{i}", per_batch, "train") for i in range(1, 6)),
                           ("test_batch", n_test, "test")]:
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        write_cifar_batch(folder / name, images, labels)
        out[f"{split}_images"].append(images)
        out[f"{split}_labels"].append(np.asarray(labels, dtype=np.int64))
    return {k: np.concatenate(v) for k, v in out.items()}


def write_image(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    """Save a uint8 [H, W] or [H, W, 3] array as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def banded_rgb(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A black [H, W, 3] image whose central min(H, W) square has the colour ``colour``."""
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[top:top + side, left:left + side] = colour
    return array
