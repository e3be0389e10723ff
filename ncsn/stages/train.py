"""Train the score network (resumes from the newest checkpoint after a crash)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.config import Config


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Train on ``paths.prepare``; write checkpoints, logs and ``model.pt`` to ``paths.train``."""
    import torch

    from ncsn.train import train
    from ncsn.sigma_logging import log_sigma_schedule

    out_dir = Path(cfg.paths.train)
    final = train(cfg, cfg.paths.prepare, out_dir, on_metrics=tracker.log_metrics)
    sigmas = torch.load(final, map_location="cpu", weights_only=True)["sigmas"]
    log_sigma_schedule(tracker, sigmas, out_dir)
    for name in ("train_log.csv", "val_loss.csv"):
        tracker.log_artifact(out_dir / name)
    tracker.log_artifact(final, "checkpoint")
