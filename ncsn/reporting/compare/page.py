"""The comparison as one self-contained HTML page (``templates/compare.html``).

Sections: the runs (dataset, profile, commit, registered version), the scores with each
dataset's floor and FID ÷ floor, the parameters that differ, the σ schedules overlaid, the
sample grids side by side, and the wall time of each stage. The tables are the frames of
:class:`~ncsn.reporting.compare.summary.Comparison`, handed to the template as rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ncsn.figures.sigma_schedule import sigma_schedule_png
from ncsn.reporting.compare.summary import Comparison
from ncsn.reporting.compare.table import differing_params
from ncsn.reporting.render import render

TITLE = "NCSN run comparison"
GRID_WIDTH = 540  # sample grids narrower than this are enlarged towards it (two side by side)


def _plain(value: Any) -> Any:
    """A cell of a frame for the template: NaN (pandas' missing value) as None."""
    return None if not isinstance(value, (list, tuple, dict, bytes)) and pd.isna(value) else value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict per row (the index as ``run_id``), missing values as None."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.rename_axis("run_id").reset_index().to_dict("records")]


def _by_key(frame: pd.DataFrame) -> list[tuple[str, list[Any]]]:
    """A runs × keys frame turned into (key, one value per run) rows."""
    return [(str(key), [_plain(v) for v in values]) for key, values in frame.T.iterrows()]


def page_context(comparison: Comparison, *, store: str, selection: str, generated: str) -> dict[str, Any]:
    """What ``templates/compare.html`` shows."""
    runs = _records(comparison.runs)
    for run in runs:
        run["grid"] = comparison.grids.get(run["run_id"])
    labels = comparison.runs["label"]
    schedules = {labels[i]: sigmas for i, sigmas in comparison.sigmas.items()}
    return {
        "title": TITLE, "store": store, "selection": selection, "generated": generated, "runs": runs,
        "grid_width": GRID_WIDTH,
        "params": _by_key(differing_params(comparison.params)),
        "wall": _by_key(comparison.wall),
        "sigma_png": sigma_schedule_png(schedules) if schedules else None,
        "sigma_sources": sorted(set(comparison.sigmas_source.values())),
    }


def render_page(comparison: Comparison, *, store: str, selection: str, generated: str) -> str:
    """The whole page as text."""
    return render("compare.html", page_context(comparison, store=store, selection=selection, generated=generated))
