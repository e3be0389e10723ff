"""A process that registers models until it is killed (driven by tests/tracking/test_crash_registry.py).

``python -m tests.registry_worker MLFLOW_DIR CHECKPOINT ...`` registers the checkpoints in turn
(``--rounds`` times over) exactly as the evaluate stage does (a stage run, then
``register_and_promote``), the k-th with classifier FID 100 - k so that every new version
should become champion. It prints ``ready``
once imported and connected, and ``registered <version>`` after each registration.

``--die-at NAME:N`` makes the process SIGKILL itself right after the N-th call of ``NAME``,
one of :data:`KILL_POINTS`, for the points a random delay rarely hits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from ncsn.config import Config, config_from_dict


def worker_config(mlflow_dir: str | Path) -> Config:
    """Smoke U-Net settings for 8x8 mnist5k, tracking and registration into ``mlflow_dir``."""
    return config_from_dict({"profile": "smoke", "base": {"dataset": "mnist5k"}, "data": {"image_size": 8},
                             "tracking": {"enabled": True, "register": True, "experiment": "crash"},
                             "paths": {"mlflow": str(mlflow_dir)}})


def _patch(owner: Any, attribute: str, calls: int) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)
    seen = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        seen["n"] += 1
        if seen["n"] == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attribute, wrapper)


def _kill_points() -> dict[str, tuple[Any, str]]:
    import shutil

    from mlflow import MlflowClient

    return {
        # one file of the model directory copied into the run's artifacts, the rest not
        "copy_file": (shutil, "copy2"),
        # the version exists (files verified later), the alias has not moved
        "create_model_version": (MlflowClient, "create_model_version"),
        # the alias has moved, the stage run is still open
        "set_registered_model_alias": (MlflowClient, "set_registered_model_alias"),
    }


KILL_POINTS = ("copy_file", "create_model_version", "set_registered_model_alias")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mlflow_dir")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--die-at", default=None)
    args = parser.parse_args(argv)

    from ncsn.tracking.registry import register_and_promote
    from ncsn.tracking.runs import stage_run
    from ncsn.tracking.store import connect

    cfg = worker_config(args.mlflow_dir)
    connect(cfg)
    if args.die_at:
        name, calls = args.die_at.split(":")
        _patch(*_kill_points()[name], int(calls))
    print("ready", flush=True)
    for k, checkpoint in enumerate(args.checkpoints * args.rounds):
        metrics = {"classifier_fid": 100.0 - k, "n_samples": 32, "extractor": "ncsn-digit-classifier"}
        with stage_run(cfg, "evaluate") as tracker:
            result = register_and_promote(cfg, tracker, Path(checkpoint), metrics)
        print("registered", result["version"], result["promoted"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
