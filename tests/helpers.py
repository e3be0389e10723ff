"""Shared test helpers: parameter files pointing into a temporary folder."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None, *,
                 profile: str = "smoke") -> Path:
    """A params.yaml for ``profile`` whose outputs all land under ``tmp_path``."""
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    params["profile"] = profile
    params["paths"] = {k: str(tmp_path / "outputs" / k) for k in params["paths"]}
    params["tracking"]["enabled"] = False
    for section, values in (overrides or {}).items():
        params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def link_prepared(tmp_path: Path, prepared: Path) -> None:
    """Make ``tmp_path/outputs/prepare`` the shared prepared data (see the ``prepared`` fixture)."""
    (tmp_path / "outputs").mkdir(exist_ok=True)
    (tmp_path / "outputs" / "prepare").symlink_to(prepared)


def ncsn_command(*args: str) -> list[str]:
    """``python -m ncsn ARGS`` with this interpreter."""
    return [sys.executable, "-m", "ncsn", *args]


def run_ncsn(*args: str, cwd: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess, single-threaded, capturing output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(ncsn_command(*args), cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"ncsn {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result
