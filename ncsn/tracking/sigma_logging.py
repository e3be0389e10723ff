"""The noise levels σ_1 > ... > σ_L in the MLflow run: a parameter, a CSV and a log-scale plot."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ncsn.storage.tables import write_sigmas_csv
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
    ``sigma_schedule/sigmas.png``, both written to ``out_dir``.

    :param sigmas: [L] descending noise levels.
    """
    assert sigmas.ndim == 1 and len(sigmas) > 0, f"expected [L] noise levels, got shape {tuple(sigmas.shape)}"
    values = [float(s) for s in sigmas.detach().cpu().double()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "sigmas.csv", out_dir / "sigmas.png"
    if not csv_path.is_file():  # ncsn.stages.train_loop writes it in the train stage
        write_sigmas_csv(csv_path, values)
    _plot_sigmas(values, png_path)
    tracker.log_params({"sigmas": _sigmas_param(values), "sigmas.num_levels": len(values),
                        "sigmas.begin": f"{values[0]:.6g}", "sigmas.end": f"{values[-1]:.6g}"})
    tracker.log_artifact(csv_path, "sigma_schedule")
    tracker.log_artifact(png_path, "sigma_schedule")


def _plot_sigmas(values: list[float], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(len(values)), values, marker="o", markersize=3)
    ax.set_yscale("log")
    ax.set_xlabel("level i (0 = largest)")
    ax.set_ylabel("σ_i")
    ratio = (values[-1] / values[0]) ** (1 / (len(values) - 1)) if len(values) > 1 else math.nan
    ax.set_title(f"{len(values)} noise levels, σ_(i+1)/σ_i = {ratio:.3g}")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
