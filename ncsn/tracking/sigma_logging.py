"""The noise levels σ_1 > ... > σ_L in the MLflow run: a parameter, a CSV and a log-scale plot."""

from __future__ import annotations

from pathlib import Path

import torch

from ncsn.core.sigmas import write_sigmas_csv
from ncsn.figures.sigma_schedule import sigma_schedule_png
from ncsn.storage.atomic import atomic_write
from ncsn.tracking.trackers import NullTracker, Tracker

SIGMAS_PARAM_LENGTH = 500  # longer schedules are shortened in the parameter (the CSV has them all)


def _sigmas_param(values: list[float]) -> str:
    """``"1, 0.599, ..., 0.01"``; shortened to head and tail, saying so, past SIGMAS_PARAM_LENGTH."""
    text = ", ".join(f"{s:.6g}" for s in values)
    if len(text) <= SIGMAS_PARAM_LENGTH:
        return text
    k = 8
    head, tail = (", ".join(f"{s:.6g}" for s in part) for part in (values[:k], values[-k:]))
    return f"{head}, ..., {tail} [truncated: {2 * k} of {len(values)} levels shown; all in sigmas.csv]"


def log_sigma_schedule(tracker: Tracker | NullTracker, sigmas: torch.Tensor, out_dir: Path) -> None:
    """Log the noise levels σ_1 > ... > σ_L three ways: parameter, CSV and log-scale plot.

    Parameters ``sigmas`` (comma-separated; head and tail only, marked ``[truncated: ...]``, when
    long), ``sigmas.num_levels``, ``sigmas.begin``, ``sigmas.end``; artifacts
    ``sigma_schedule/sigmas.csv`` (``level,sigma``; the train stage's file when it is there) and
    ``sigma_schedule/sigmas.png`` (drawn by :func:`ncsn.figures.sigma_schedule.sigma_schedule_png`),
    both written to ``out_dir``.

    :param sigmas: [L] descending noise levels.
    """
    assert sigmas.ndim == 1 and len(sigmas) > 0, f"expected [L] noise levels, got shape {tuple(sigmas.shape)}"
    values = [float(s) for s in sigmas.detach().cpu().double()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "sigmas.csv", out_dir / "sigmas.png"
    if not csv_path.is_file():  # ncsn.stages.train_loop writes it in the train stage
        write_sigmas_csv(csv_path, values)
    png = sigma_schedule_png(values)
    atomic_write(png_path, lambda f: f.write(png))
    tracker.log_params({"sigmas": _sigmas_param(values), "sigmas.num_levels": len(values),
                        "sigmas.begin": f"{values[0]:.6g}", "sigmas.end": f"{values[-1]:.6g}"})
    tracker.log_artifact(csv_path, "sigma_schedule")
    tracker.log_artifact(png_path, "sigma_schedule")
