"""Prepared splits on disk: atomic writes and safe reads.

A split file (``train.pt`` / ``test.pt``) is ``torch.save`` of a plain dict::

    data     uint8 [N, C, H, W] images, or float32 [N, D] points (gmm)
    labels   int64 [N] class labels; absent when the dataset has none

so it loads with ``torch.load(path, weights_only=True)`` (no code runs on load).
``stats.json`` holds the dataset statistics written by :func:`ncsn.data.prepare`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal

import torch
from torch import Tensor

from ncsn.storage.atomic import atomic_write, os_error_in
from ncsn.data.errors import DataError

SPLITS = ("train", "test")
STATS_FILE = "stats.json"
_RERUN = "run the prepare stage first: dvc repro prepare (or: ncsn prepare)"


@dataclass(frozen=True)
class PreparedSplit:
    """One stored split.

    :param data: uint8 [N, C, H, W] images, or float32 [N, D] points.
    :param labels: int64 [N] labels, or None when the dataset has none.
    """

    data: Tensor
    labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels.shape != (self.data.shape[0],):
            raise ValueError(f"labels must be [{self.data.shape[0]}], got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.data.shape[0]


def write_data_file(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``ncsn.storage.atomic.atomic_write``, with a failure to write as a ``DataError``.

    :raises DataError: when the folder cannot be created or written, or the disk is full.
    """
    try:
        atomic_write(path, write)
    except (OSError, RuntimeError) as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        raise DataError(f"cannot write {path}: {cause.strerror or cause}") from None


def split_path(out_dir: str | Path, split: str) -> Path:
    """``out_dir/<split>.pt`` for ``split`` in ``("train", "test")``."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return Path(out_dir) / f"{split}.pt"


def save_split(out_dir: str | Path, split: str, prepared: PreparedSplit) -> Path:
    """Write ``prepared`` atomically to ``out_dir/<split>.pt``; returns the path."""
    payload = {"data": prepared.data.contiguous()}
    if prepared.labels is not None:
        payload["labels"] = prepared.labels.to(torch.int64).contiguous()
    path = split_path(out_dir, split)
    write_data_file(path, lambda f: torch.save(payload, f))
    return path


def load_split(out_dir: str | Path, split: Literal["train", "test"]) -> PreparedSplit:
    """Read ``out_dir/<split>.pt`` with ``weights_only=True``.

    :param out_dir: the prepare stage's output folder (``paths.prepare``).
    :return: the stored tensors, on the CPU.
    :raises DataError: when the file is missing, corrupt or not a prepared split.
    """
    path = split_path(out_dir, split)
    if not path.is_file():
        raise DataError(f"{path} not found; {_RERUN}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, unpickling refused, ...
        raise DataError(f"{path} is corrupt ({type(err).__name__}); delete it and {_RERUN}.") from None
    data, labels = (payload.get("data"), payload.get("labels")) if isinstance(payload, dict) else (None, None)
    if not isinstance(data, Tensor) or data.ndim not in (2, 4) or not (labels is None or isinstance(labels, Tensor)):
        raise DataError(f"{path} is not a prepared split (expected a dict with a 'data' tensor); {_RERUN}.")
    try:
        return PreparedSplit(data, labels)
    except ValueError as err:
        raise DataError(f"{path}: {err}; {_RERUN}.") from None


def write_stats(out_dir: str | Path, stats: dict[str, Any]) -> Path:
    """Write ``stats`` atomically to ``out_dir/stats.json``; returns the path."""
    path = Path(out_dir) / STATS_FILE
    text = _to_json(stats) + "\n"
    write_data_file(path, lambda f: f.write(text.encode()))
    return path


def _to_json(value: Any, indent: int = 0) -> str:
    """JSON with one key per line, lists of numbers kept on one line (e.g. test indices)."""
    if isinstance(value, dict) and value:
        pad = " " * (indent + 2)
        items = [f"{pad}{json.dumps(str(k))}: {_to_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(value)


def read_stats(out_dir: str | Path) -> dict[str, Any]:
    """The dict written by the prepare stage to ``out_dir/stats.json``.

    :raises DataError: when the file is missing or not valid JSON.
    """
    path = Path(out_dir) / STATS_FILE
    if not path.is_file():
        raise DataError(f"{path} not found; {_RERUN}.")
    try:
        stats = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is unreadable ({err}); delete it and {_RERUN}.") from None
    if not isinstance(stats, dict):
        raise DataError(f"{path} is not a stats mapping; delete it and {_RERUN}.")
    return stats
