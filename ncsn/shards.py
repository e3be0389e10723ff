"""Samples on disk: fixed-size shards written atomically, so sampling resumes after a crash.

Shard ``k`` holds the samples with seeds ``base_seed + k·size … base_seed + (k+1)·size − 1``
as ``{"images": uint8 [n, C, H, W] (or float [n, D]), "seeds": int64 [n]}``. A shard
either exists whole or not at all, and its content depends only on its seeds.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ncsn.checkpoint import CheckpointError, atomic_save

_SHARD_RE = re.compile(r"^shard_(\d+)\.pt$")


def shard_path(folder: str | Path, index: int) -> Path:
    """``folder/shard_{index:05d}.pt``."""
    return Path(folder) / f"shard_{index:05d}.pt"


def shard_seeds(base_seed: int, index: int, shard_size: int, n_total: int) -> list[int]:
    """Seeds of the samples in shard ``index`` (the last shard may be short)."""
    start = index * shard_size
    return [base_seed + i for i in range(start, min(start + shard_size, n_total))]


def write_shard(folder: str | Path, index: int, images: torch.Tensor, seeds: list[int]) -> None:
    """Atomically write one shard.

    :raises CheckpointError: when it cannot be written (full disk, ...); no partial file is left.
    """
    atomic_save({"images": images.cpu(), "seeds": torch.tensor(seeds, dtype=torch.long)}, shard_path(folder, index))


def shard_holds(path: str | Path, seeds: list[int]) -> bool:
    """Whether the shard at ``path`` reads back and holds exactly the samples of ``seeds``."""
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
        return (isinstance(shard, dict) and shard["seeds"].tolist() == list(seeds)
                and len(shard["images"]) == len(seeds))
    except Exception:  # noqa: BLE001 - unreadable or foreign: not the shard we need
        return False


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


def read_samples(folder: str | Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of ``folder`` in seed order.

    :return: (images [N, ...], seeds [N]), at most ``limit`` of them (then only the first
        shards, those that hold them, are read: memory does not grow with N).
    :raises CheckpointError: when the folder holds no shard or a shard is unreadable.
    """
    shards = existing_shards(folder)
    if not shards:
        raise CheckpointError(f"no samples in {folder}: run the sample stage first (dvc repro sample)")
    images, seeds = [], []
    for index in sorted(shards):
        if limit and sum(len(s) for s in seeds) >= limit:  # the first shards suffice: read no more
            break
        try:
            shard = torch.load(shards[index], map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure means a damaged shard
            raise CheckpointError(f"sample shard {shards[index]} is unreadable ({err}); delete it and rerun") from None
        images.append(shard["images"])
        seeds.append(shard["seeds"])
    all_images, all_seeds = torch.cat(images), torch.cat(seeds)
    return (all_images[:limit], all_seeds[:limit]) if limit else (all_images, all_seeds)
