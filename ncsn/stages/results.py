"""The few lines ``ncsn pipeline`` ends with: the evaluate stage's headline figures, with their error bars.

``dvc metrics show`` prints every metric of every stage (hundreds of columns); the pipeline prints
the figures a run is judged by, from ``metrics.json`` of the evaluate stage, and names that command
for the rest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ncsn.evaluation import FID_KINDS

HEADLINE = ("fid", "is", "kid_mean", "precision", "recall")


def _figure(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def headline_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per headline figure of ``metrics``: the FID, IS, KID (mean), precision and recall
    in the extractor's feature space, each with its 95 % bootstrap interval where recorded, then
    bits/dim with its standard error."""
    prefix = next((fid["prefix"] for key, fid in FID_KINDS.items() if key in metrics), None)
    keys = [f"{prefix}{name}" for name in HEADLINE] if prefix is not None else []
    lines = []
    for key in (k for k in keys if isinstance(metrics.get(k), (int, float))):
        line = f"  {key:<22} {_figure(float(metrics[key]))}"
        interval = metrics.get(f"{key}_ci95")
        if isinstance(interval, list) and len(interval) == 2:
            line += f"  (95 % interval {_figure(float(interval[0]))} to {_figure(float(interval[1]))})"
        lines.append(line)
    if isinstance(metrics.get("bits_per_dim"), (int, float)):
        line = f"  {'bits_per_dim':<22} {_figure(float(metrics['bits_per_dim']))}"
        if isinstance(metrics.get("bits_per_dim_se"), (int, float)):
            line += f" ± {_figure(float(metrics['bits_per_dim_se']))} (standard error)"
        lines.append(line)
    return lines


def results_summary(metrics_path: Path) -> str:
    """The pipeline's closing figures (``metrics_path``: the evaluate stage's metrics.json), or one
    line naming ``dvc metrics show`` when that stage has not written it."""
    more = "every metric of every stage: dvc metrics show"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"Metrics: {more}\n"
    lines = headline_lines(metrics)
    if not lines:
        return f"Metrics: {more}\n"
    extractor = f", {metrics['extractor']} features" if "extractor" in metrics else ""
    samples = f"{metrics['n_samples']} samples" if "n_samples" in metrics else "the samples"
    return f"Results ({samples}{extractor}; {more}):\n" + "\n".join(lines) + "\n"
