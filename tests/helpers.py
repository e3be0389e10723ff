"""Shared test helpers: parameter files pointing into a temporary folder, copies of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None, *,
                 profile: str = "smoke") -> Path:
    """A params.yaml composed for ``profile`` (``ncsn/conf``) whose outputs all land under ``tmp_path``.

    A ``base.dataset`` among ``overrides`` chooses the dataset's group, as ``-S dataset=...`` does.
    """
    from ncsn.config.composition import compose_params

    dataset = (overrides or {}).get("base", {}).get("dataset")
    params = compose_params([f"profile={profile}", *([f"dataset={dataset}"] if dataset else [])])
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


def copy_repository(dest: Path) -> None:
    """The repository's tracked and unignored files, committed into a fresh git repo at ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=ncsn-test", "-c", "user.email=ncsn-test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "copy"], cwd=dest, check=True)


def repo_env(repo: Path) -> dict[str, str]:
    """The environment of a ``dvc`` or ``ncsn`` command run in the copy ``repo``: this venv's
    commands first on PATH, the copy's package importable, one thread, git identity set, no
    ``MLFLOW_TRACKING_URI`` (add one to track into a server)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1",
           "GIT_AUTHOR_NAME": "ncsn-test", "GIT_AUTHOR_EMAIL": "ncsn-test@localhost",
           "GIT_COMMITTER_NAME": "ncsn-test", "GIT_COMMITTER_EMAIL": "ncsn-test@localhost"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env
