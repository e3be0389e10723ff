"""Prepare the dataset: split, store as uint8 tensors, and compute stats.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ncsn.config import Config


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Write ``paths.prepare/{train.pt,test.pt,stats.json}`` and log the stats."""
    from ncsn.data import prepare

    out_dir = Path(cfg.paths.prepare)
    stats = prepare(cfg, out_dir)
    tracker.log_metrics({k: float(v) for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    tracker.log_artifact(out_dir / "stats.json")
    print(json.dumps({k: v for k, v in stats.items() if not isinstance(v, (list, dict))}, indent=2))
