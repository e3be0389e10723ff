"""The σ schedules of several runs overlaid in one log-scale plot (PNG bytes)."""

from __future__ import annotations

import io
from typing import Sequence

from ncsn.reporting.compare.summary import RunSummary

_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--")]


def sigma_plot(summaries: Sequence[RunSummary]) -> bytes | None:
    """σ_i against the level i for each run that has a schedule; None when none has.

    Markers and dash patterns vary by run, so identical schedules stay visible on top of each other.
    """
    runs = [s for s in summaries if s.sigmas]
    if not runs:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.2, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, summary in enumerate(runs):
        marker, dash = _STYLES[k % len(_STYLES)]
        values = summary.sigmas or []
        label = f"{summary.label} (L = {len(values)}, {values[0]:.3g} → {values[-1]:.3g})"
        ax.plot(range(1, len(values) + 1), values, marker=marker, markersize=4, linestyle=dash,
                linewidth=1.4, alpha=0.85, label=label)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("noise level i (1 = largest)")
    ax.set_ylabel(r"$\sigma_i$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
