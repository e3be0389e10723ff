"""The compare page calls two runs different only where their FID intervals separate."""

from __future__ import annotations

import math

import pandas as pd

from ncsn.reporting.compare.summary import separated


def test_runs_differ_only_where_their_intervals_do_not_overlap() -> None:
    runs = pd.DataFrame({
        "label": ["a", "b", "c", "d", "e"],
        "dataset": ["mnist", "mnist", "mnist", "fashion", "mnist"],
        "extractor": ["clf"] * 5,
        "fid_ci95_low": [1.0, 1.5, 3.0, 5.0, math.nan],
        "fid_ci95_high": [2.0, 2.5, 4.0, 6.0, math.nan],
    }, index=["r1", "r2", "r3", "r4", "r5"])
    apart = separated(runs, "fid_ci95_low", "fid_ci95_high")
    assert apart.to_dict() == {"r1": "c", "r2": "c", "r3": "a, b", "r4": "", "r5": ""}
