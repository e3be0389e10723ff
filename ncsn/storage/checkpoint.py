"""Self-describing checkpoints: state dicts (the σ schedule among the network's buffers) + step + config.

A checkpoint is a plain dict of tensors and Python primitives, written atomically
(temporary file in the same folder, fsync, ``os.replace``) and read with
``torch.load(..., weights_only=True)``, so loading never runs code from the file.

Layout of a checkpoint dict::

    format       "ncsn-checkpoint/1"
    step         int, optimisation steps done
    config       Config.to_dict() of the run that wrote it
    data         {"dataset", "channels", "image_size"}
    model        state dict of the score network; its buffer ``sigmas`` is the [L] noise levels,
                 descending, the one copy of the schedule (:func:`checkpoint_sigmas`)
    ema          state dict of the EMA network, or None
    optimizer    optimiser state dict (training checkpoints only)
    rng          generator states (training checkpoints only)

The train stage's final sampling checkpoint, ``paths.train/model.pt``, has one owner:
:func:`final_model_path` names it and :func:`load_final_model` loads and checks it.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ncsn.storage.atomic import atomic_write, os_error_in

if TYPE_CHECKING:
    from ncsn.config import Config

log = logging.getLogger(__name__)

FORMAT = "ncsn-checkpoint/1"
MODEL_FILE = "model.pt"  # the final sampling checkpoint in paths.train
_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit the run."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically (``ncsn.storage.atomic.atomic_write``).

    :raises CheckpointError: when the folder is not writable or the disk is full;
        no partial file is left behind.
    """
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        raise CheckpointError(f"cannot write {path}: {cause.strerror or cause}") from None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (hex digest)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) and check its format.

    :raises CheckpointError: missing, truncated, corrupt, unsafe (a pickle that
        would run code) or not an ncsn checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        found = (path / MODEL_FILE).is_file()
        inside = f"the file in it, {path / MODEL_FILE}" if found else f"a checkpoint file such as {path / MODEL_FILE}"
        raise CheckpointError(f"{path} is a folder, not a checkpoint; pass {inside}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt, or not a file written by"
                                  " torch.save (not a zip archive); nothing in it was run") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unsafe content"
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain data"
            f" (weights_only load failed: {first[:200]})"
        ) from None
    except Exception as err:  # noqa: BLE001 - garbage makes the unpickler fail in many ways
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an ncsn checkpoint: expected format {FORMAT!r}, found {found!r}")
    return ckpt


def checkpoint_sigmas(ckpt: dict[str, Any]) -> Tensor:
    """The [L] noise levels of a checkpoint: the network's ``sigmas`` buffer (files written before
    the schedule lived only there carry it as the top-level ``sigmas`` too, which is read when the
    state dict lacks it)."""
    sigmas = ckpt["model"].get("sigmas")
    return ckpt["sigmas"] if sigmas is None else sigmas


def check_compatible(ckpt: dict[str, Any], *, arch: str, dataset: str, source: str | Path) -> None:
    """Refuse a checkpoint written for another architecture or dataset.

    :raises CheckpointError: saying what was expected and what was found.
    """
    found_arch = ckpt["config"]["model"]["arch"]
    found_dataset = ckpt["data"]["dataset"]
    if found_arch != arch:
        raise CheckpointError(f"{source}: expected a checkpoint of arch {arch!r}, found {found_arch!r}")
    if found_dataset != dataset:
        raise CheckpointError(f"{source}: expected a checkpoint trained on {dataset!r}, found {found_dataset!r}")


def final_model_path(cfg: Config) -> Path:
    """``paths.train/model.pt``: the final sampling checkpoint that the train stage writes."""
    return Path(cfg.paths.train) / MODEL_FILE


def load_final_model(cfg: Config) -> tuple[Path, dict[str, Any]]:
    """The final model of this configuration: its path and its checkpoint, loaded and checked.

    :return: ``(final_model_path(cfg), checkpoint dict)``; the checkpoint was trained for
        ``cfg.model.arch`` on ``cfg.base.dataset``.
    :raises CheckpointError: missing (run the train stage), unreadable, unsafe, or written
        for another architecture or dataset.
    """
    path = final_model_path(cfg)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; run the train stage first: dvc repro train")
    ckpt = load_checkpoint(path)
    check_compatible(ckpt, arch=cfg.model.arch, dataset=cfg.base.dataset, source=path)
    return path, ckpt


def checkpoint_path(folder: str | Path, step: int) -> Path:
    """``folder/ckpt_{step:08d}.pt``."""
    return Path(folder) / f"ckpt_{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint file in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(found)


def latest_valid_checkpoint(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The newest checkpoint in ``folder`` that loads; the others are skipped with a warning
    that names the file and why it was refused."""
    for _, path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path, map_location)
        except CheckpointError as err:
            log.warning("skipping %s: %s", path, err)
    return None


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints in ``folder``."""
    for _, path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)
