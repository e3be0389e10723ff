"""Write one self-contained HTML report of the run (outputs/report/report.html)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ncsn.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="report file (default: paths.report/report.html)")


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Render ``paths.report/report.html`` from the other stages' outputs and log it to MLflow."""
    from ncsn.reporting import write_report

    path = write_report(cfg, getattr(args, "out", None))
    tracker.log_artifact(path, "report")
    size = path.stat().st_size / 2 ** 20
    print(f"report: {path} ({size:.1f} MiB); open it in a browser: file://{Path(path).resolve()}")
