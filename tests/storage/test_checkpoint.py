"""Checkpoints are written atomically and loaded without running code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from ncsn.storage.checkpoint import (FORMAT, CheckpointError, atomic_save, check_compatible, latest_valid_checkpoint,
                             load_checkpoint, checkpoint_path, prune_checkpoints)


def _ckpt(step: int = 1) -> dict:
    return {"format": FORMAT, "step": step, "config": {"model": {"arch": "unet"}}, "data": {"dataset": "mnist5k"},
            "sigmas": torch.linspace(1, 0.01, 10), "model": {"w": torch.ones(3)}, "ema": None}


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_round_trip(tmp_path: Path) -> None:
    atomic_save(_ckpt(7), tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path: Path) -> None:
    atomic_save(_ckpt(), tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ncsn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_incompatible_arch_or_dataset_is_named() -> None:
    ckpt = _ckpt()
    with pytest.raises(CheckpointError, match="expected a checkpoint of arch 'ncsn', found 'unet'"):
        check_compatible(ckpt, arch="ncsn", dataset="mnist5k", source="x.pt")
    with pytest.raises(CheckpointError, match="trained on 'cifar10', found 'mnist5k'"):
        check_compatible(ckpt, arch="unet", dataset="cifar10", source="x.pt")


def test_latest_valid_skips_corrupt_and_prune_keeps_newest(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        atomic_save(_ckpt(step), checkpoint_path(tmp_path, step))
    checkpoint_path(tmp_path, 40).write_bytes(b"garbage")
    assert latest_valid_checkpoint(tmp_path)["step"] == 30
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000030.pt", "ckpt_00000040.pt"]


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot write"):
        atomic_save(_ckpt(), blocker / "sub" / "c.pt")


def test_a_refused_checkpoint_is_skipped_with_a_warning_that_names_it(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    _Exploit.marker = tmp_path / "pwned"
    atomic_save(_ckpt(1), checkpoint_path(tmp_path, 1))
    planted = checkpoint_path(tmp_path, 2)
    torch.save({"format": FORMAT, "payload": _Exploit()}, planted)
    with caplog.at_level("WARNING", logger="ncsn.storage.checkpoint"):
        assert latest_valid_checkpoint(tmp_path)["step"] == 1
    assert str(planted) in caplog.text and "refused" in caplog.text
    assert not _Exploit.marker.exists()
