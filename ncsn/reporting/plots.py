"""The report's own plots (matplotlib → PNG bytes) from the CSV files the stages write."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ncsn.figures.common import pyplot

Rows = list[dict[str, str]]


def read_csv(path: Path) -> Rows:
    """Rows of a CSV file with a header line, as strings."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def column(rows: Rows, name: str) -> list[float]:
    """One column as floats (NaN where empty or not a number)."""
    out = []
    for row in rows:
        try:
            out.append(float(row.get(name) or "nan"))
        except ValueError:
            out.append(float("nan"))
    return out


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes (100 dpi); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return buf.getvalue()


def training_plot(train_rows: Rows, val_rows: Rows) -> bytes:
    """Training loss (and throughput) and the mean held-out DSM loss against the step."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    ax = axes[0]
    if train_rows:
        steps, loss = column(train_rows, "step"), column(train_rows, "loss")
        ax.plot(steps, loss, label="training loss (batch)", linewidth=1)
    if val_rows:
        ax.plot(column(val_rows, "step"), column(val_rows, "mean"), "o-", label="held-out DSM loss (mean of levels)")
    values = [v for v in (column(train_rows, "loss") + column(val_rows, "mean")) if math.isfinite(v)]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("annealed DSM loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    if train_rows and "images_per_s" in train_rows[0]:
        ax.plot(column(train_rows, "step"), column(train_rows, "images_per_s"), linewidth=1)
        ax.set_ylabel("images / s")
        ax.set_xlabel("step")
        ax.set_title("training throughput", fontsize=10)
        ax.grid(alpha=0.3)
    else:
        ax.axis("off")
    return _png(fig)


def level_loss_plot(val_rows: Rows, sigmas: list[float] | None) -> bytes:
    """Held-out DSM loss per noise level at the last validation step (paper: model comparison)."""
    plt = pyplot()
    last = val_rows[-1]
    levels = sorted((int(k.split("_")[1]), float(v)) for k, v in last.items() if k.startswith("level_") and v)
    fig, ax = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    if sigmas and len(sigmas) == len(levels):
        ax.semilogx([sigmas[i] for i, _ in levels], [v for _, v in levels], "o-")
        ax.set_xlabel("σ_i")
    else:
        ax.plot([i for i, _ in levels], [v for _, v in levels], "o-")
        ax.set_xlabel("level i")
    ax.set_ylabel("σ² · DSM loss")
    ax.set_title(f"held-out loss per level at step {last.get('step', '?')}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def checkpoint_plot(rows: Rows, best_step: float | None) -> bytes:
    """Fast FID (left axis) and held-out DSM loss (right axis) of every snapshot; the loss alone
    when no snapshot has a FID (evaluated without a feature extractor)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    steps = column(rows, "step")
    extractor = rows[0].get("extractor", "") if rows else ""
    has_loss = "dsm_loss" in (rows[0] if rows else {})
    has_fid = any(math.isfinite(v) for v in column(rows, "fid"))
    ax.set_xlabel("training step of the snapshot")
    if has_fid or not has_loss:
        ax.plot(steps, column(rows, "fid"), "o-", color="tab:blue", label="FID")
        ax.set_ylabel(f"FID ({extractor})" if extractor else "FID", color="tab:blue")
    if best_step is not None:
        ax.axvline(best_step, color="tab:green", linestyle="--", linewidth=1, label=f"selected: step {best_step:g}")
    if has_loss and not has_fid:
        ax.plot(steps, column(rows, "dsm_loss"), "s--", color="tab:orange", markersize=4, label="held-out DSM loss")
        ax.set_ylabel("held-out DSM loss", color="tab:orange")
        ax.set_title("no FID (no feature extractor): selected by held-out DSM loss", fontsize=10)
    elif has_loss:
        ax2 = ax.twinx()
        ax2.plot(steps, column(rows, "dsm_loss"), "s--", color="tab:orange", markersize=4)
        ax2.set_ylabel("held-out DSM loss", color="tab:orange")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return _png(fig)
