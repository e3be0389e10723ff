"""A tiny DVC repository in a temporary folder, for tests of the pipeline runner and flow."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import write_params


def make_dvc_repo(root: Path, stages: dict[str, dict[str, Any]]) -> Path:
    """``git init`` + ``dvc init`` in ``root``, a valid smoke params.yaml and ``stages`` as dvc.yaml.

    :param stages: the ``stages:`` mapping of dvc.yaml, e.g. ``{"a": {"cmd": "echo a > a.txt",
        "outs": ["a.txt"]}}``.
    """
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    Repo.init(str(root)).close()
    write_params(root)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root
