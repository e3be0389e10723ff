"""The plot of the noise levels σ_1 > ... > σ_L: one schedule, or several overlaid (PNG bytes).

The one drawing of the σ schedule: the train stage's ``sigmas.png`` (:func:`write_sigma_schedule`),
the report's noise-level section and the comparison page's overlay of several runs all call
:func:`sigma_schedule_png`. It uses matplotlib's object API (no pyplot state), so it imports
neither the report nor any stage.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from ncsn.storage.tables import write_bytes, write_sigmas_csv

_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--")]


def common_ratio(sigmas: Sequence[float]) -> float:
    """γ = σ_i / σ_(i+1) of a geometric schedule, from its ends: (σ_1 / σ_L)^(1 / (L − 1)); NaN for L = 1."""
    if len(sigmas) < 2 or not sigmas[-1] > 0:
        return math.nan
    return (sigmas[0] / sigmas[-1]) ** (1 / (len(sigmas) - 1))


def sigma_schedule_png(schedules: Mapping[str, Sequence[float]] | Sequence[float]) -> bytes:
    """σ_i against the level i (1 = largest) on a log scale.

    :param schedules: one schedule (a sequence of σ), titled with L, σ_1, σ_L and γ; or
        ``{label: σ}`` for several, each in the legend with its L, ends and γ. Markers and dash
        patterns vary by schedule, so identical schedules stay visible on top of each other.
    :raises ValueError: when there is no σ to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    named = dict(schedules) if isinstance(schedules, Mapping) else {"": list(schedules)}
    named = {label: [float(s) for s in values] for label, values in named.items() if len(values)}
    if not named:
        raise ValueError("no noise levels to plot")
    fig = Figure(figsize=(7.2, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, (label, values) in enumerate(named.items()):
        marker, dash = _STYLES[k % len(_STYLES)]
        ends = f"L = {len(values)}, {values[0]:.3g} → {values[-1]:.3g}, γ = {common_ratio(values):.3g}"
        ax.plot(range(1, len(values) + 1), values, marker=marker, markersize=4, linestyle=dash, linewidth=1.4,
                alpha=0.85, label=f"{label} ({ends})" if label else None)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("noise level i (1 = largest σ)")
    ax.set_ylabel(r"$\sigma_i$")
    ax.grid(True, which="both", alpha=0.3)
    if "" in named and len(named) == 1:
        values = named[""]
        ax.set_title(f"L = {len(values)} levels, σ₁ = {values[0]:.4g} → σ_L = {values[-1]:.4g}, "
                     f"γ = σ_i/σ_(i+1) = {common_ratio(values):.4g}", fontsize=10)
    else:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_sigma_schedule(out_dir: str | Path, sigmas: Sequence[float]) -> None:
    """The train stage's ``sigmas.csv`` (``level,sigma``) and ``sigmas.png`` in ``out_dir``, atomically.

    :param sigmas: [L] descending noise levels.
    """
    values = [float(s) for s in sigmas]
    write_sigmas_csv(Path(out_dir) / "sigmas.csv", values)
    write_bytes(Path(out_dir) / "sigmas.png", sigma_schedule_png(values))
