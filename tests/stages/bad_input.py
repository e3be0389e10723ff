"""Helpers of the bad-input tests (tests/stages/test_bad_input.py, test_bad_disk.py): params that
may be broken, the one error line of a command, the files a folder holds, a fake checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

from ncsn.storage.checkpoint import FORMAT, atomic_save
from ncsn.cli import main
from ncsn.config import load_config
from ncsn.models import build_model
from ncsn.core.sigmas import geometric_sigmas
from tests.helpers import write_params


def bad_params(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None,
            overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """The smoke params under ``tmp_path``, edited by ``change`` (which may break them)."""
    path = write_params(tmp_path, overrides)
    if change is not None:
        params = yaml.safe_load(path.read_text())
        change(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def error_line(err: str, stage: str) -> str:
    """The one error line of ``stage`` in ``err``; fails on a traceback or several error lines.

    A progress bar may end without a newline, so the line is taken from ``ncsn STAGE: error:`` on.
    """
    assert "Traceback" not in err, err
    marker = f"ncsn {stage}: error: "
    lines = [line[line.index(marker):] for line in err.split("\n") if marker in line]
    assert len(lines) == 1, err
    return lines[0]


def files(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden ones included); [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def fake_model(params: Path, path: Path, *, dataset: str | None = None) -> Path:
    """A real (untrained) smoke U-Net checkpoint for 1x28x28 images, in our format."""
    cfg = load_config(params)
    config = cfg.to_dict()
    config["base"]["dataset"] = dataset or cfg.base.dataset
    config["model"] |= {"arch": "unet", "ngf": 8}
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    torch.manual_seed(0)
    net = build_model("unet", ngf=8, channels=1, image_size=28, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 1, "config": config, "sigmas": sigmas,
                 "data": {"dataset": config["base"]["dataset"], "channels": 1, "image_size": 28},
                 "model": net.state_dict(), "ema": None}, path)
    return path


class Exploit:
    """A pickle whose loading would run a shell command that touches ``Exploit.marker``."""

    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {Exploit.marker}",))
