"""Samples on disk: fixed-size shards written atomically, so sampling resumes after a crash.

Shard ``k`` holds the samples with seeds ``base_seed + k·size … base_seed + (k+1)·size − 1``
as ``{"images": uint8 [n, C, H, W] (or float [n, D]), "seeds": int64 [n]}``. A shard
either exists whole or not at all, and its content depends only on its seeds.

``manifest.json`` beside the shards says what they were drawn from (the model file's hash,
the ``sample`` settings, the seed and the resolved sampler); shards of another manifest are
dropped (:func:`reset_if_stale`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ncsn.storage.atomic import atomic_write, os_error_in

MANIFEST = "manifest.json"
_SHARD_RE = re.compile(r"^shard_(\d+)\.pt$")


class SampleError(RuntimeError):
    """Samples that are missing, unreadable, or cannot be written (one line for the user)."""


def shard_path(folder: str | Path, index: int) -> Path:
    """``folder/shard_{index:05d}.pt``."""
    return Path(folder) / f"shard_{index:05d}.pt"


def shard_seeds(base_seed: int, index: int, shard_size: int, n_total: int) -> list[int]:
    """Seeds of the samples in shard ``index`` (the last shard may be short)."""
    start = index * shard_size
    return [base_seed + i for i in range(start, min(start + shard_size, n_total))]


def write_shard(folder: str | Path, index: int, images: torch.Tensor, seeds: list[int]) -> None:
    """Atomically write one shard.

    :raises SampleError: when it cannot be written (full disk, ...); no partial file is left.
    """
    path = shard_path(folder, index)
    shard = {"images": images.cpu(), "seeds": torch.tensor(seeds, dtype=torch.long)}
    try:
        atomic_write(path, lambda f: torch.save(shard, f))
    except (OSError, RuntimeError) as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        raise SampleError(f"cannot write {path}: {cause.strerror or cause}") from None


def load_shard(path: str | Path) -> dict[str, torch.Tensor]:
    """One shard, read safely (``weights_only=True``).

    :raises SampleError: one line naming the file, when it is unreadable, refused or not a shard.
    """
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means a damaged or foreign shard
        lines = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
        raise SampleError(f"sample shard {path} is unreadable ({reason}); delete it and rerun") from None
    if not (isinstance(shard, dict) and isinstance(shard.get("images"), torch.Tensor)
            and isinstance(shard.get("seeds"), torch.Tensor)):
        raise SampleError(f"{path} is not a sample shard (expected images and seeds); delete it and rerun")
    return shard


def shard_holds(path: str | Path, seeds: list[int]) -> bool:
    """Whether the shard at ``path`` reads back and holds exactly the samples of ``seeds``."""
    try:
        shard = load_shard(path)
    except SampleError:  # unreadable or foreign: not the shard we need
        return False
    return shard["seeds"].tolist() == list(seeds) and len(shard["images"]) == len(seeds)


def remove_partial_files(folder: str | Path) -> None:
    """Delete temporary files that a killed writer left in ``folder`` (never a complete shard)."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob(".shard_*.tmp"):
            path.unlink(missing_ok=True)


def existing_shards(folder: str | Path) -> dict[int, Path]:
    """Index → path of every complete shard in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := _SHARD_RE.match(p.name))}


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """``folder/manifest.json``, or None when it is missing or unreadable."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def reset_if_stale(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Keep ``folder``'s shards only when its manifest equals ``manifest``; otherwise empty it and write it.

    :raises SampleError: when the folder cannot be written.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        if path.is_file() and read_manifest(folder) == manifest:
            return
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    except OSError as err:
        raise SampleError(f"cannot write {folder}: {err.strerror or err}") from None


def read_samples(folder: str | Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of ``folder`` in seed order.

    :return: (images [N, ...], seeds [N]), at most ``limit`` of them (then only the first
        shards, those that hold them, are read: memory does not grow with N).
    :raises SampleError: when the folder holds no shard or a shard is unreadable.
    """
    shards = existing_shards(folder)
    if not shards:
        raise SampleError(f"no samples in {folder}: run the sample stage first (dvc repro sample)")
    images, seeds = [], []
    for index in sorted(shards):
        if limit and sum(len(s) for s in seeds) >= limit:  # the first shards suffice: read no more
            break
        shard = load_shard(shards[index])
        images.append(shard["images"])
        seeds.append(shard["seeds"])
    all_images, all_seeds = torch.cat(images), torch.cat(seeds)
    return (all_images[:limit], all_seeds[:limit]) if limit else (all_images, all_seeds)
