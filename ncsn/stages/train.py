"""Train the score network (resumes from the newest checkpoint after a crash)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.storage.checkpoint import checkpoint_sigmas, load_final_model
from ncsn.config import Config


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Train on ``paths.prepare``; write checkpoints, logs and ``model.pt`` to ``paths.train``."""
    from ncsn.tracking.sigma_logging import log_sigma_schedule
    from ncsn.stages.train_loop import train

    out_dir = Path(cfg.paths.train)
    train(cfg, cfg.paths.prepare, out_dir, on_metrics=tracker.log_metrics)
    final, ckpt = load_final_model(cfg)
    log_sigma_schedule(tracker, checkpoint_sigmas(ckpt), out_dir)
    for name in ("train_log.csv", "val_loss.csv"):
        tracker.log_artifact(out_dir / name)
    tracker.log_artifact(final, "checkpoint")
