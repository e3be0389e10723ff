"""The noise levels σ_1 > ... > σ_L in the MLflow run: parameters, and the train stage's CSV and plot."""

from __future__ import annotations

from pathlib import Path

import torch

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
    """Log the noise levels σ_1 > ... > σ_L: parameters, and the train stage's files as artifacts.

    Parameters ``sigmas`` (comma-separated; head and tail only, marked ``[truncated: ...]``, when
    long), ``sigmas.num_levels``, ``sigmas.begin``, ``sigmas.end``; artifacts
    ``sigma_schedule/sigmas.csv`` and ``sigma_schedule/sigmas.png`` from ``out_dir``, where the
    train stage wrote them (:func:`ncsn.figures.sigma_schedule.write_sigma_schedule`). Nothing is
    written here: tracking writes no stage output.

    :param sigmas: [L] descending noise levels.
    """
    assert sigmas.ndim == 1 and len(sigmas) > 0, f"expected [L] noise levels, got shape {tuple(sigmas.shape)}"
    values = [float(s) for s in sigmas.detach().cpu().double()]
    csv_path, png_path = Path(out_dir) / "sigmas.csv", Path(out_dir) / "sigmas.png"
    tracker.log_params({"sigmas": _sigmas_param(values), "sigmas.num_levels": len(values),
                        "sigmas.begin": f"{values[0]:.6g}", "sigmas.end": f"{values[-1]:.6g}"})
    tracker.log_artifact(csv_path, "sigma_schedule")
    tracker.log_artifact(png_path, "sigma_schedule")
