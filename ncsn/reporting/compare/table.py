"""The comparison as one table: the parameters that differ, and the CSV.

One CSV row per run: identity (run, dataset, profile, commit), the scores and FID ÷ floor, wall
seconds per stage, the registered version, its champion flag and the champion's version, then
one ``param:<key>`` column per parameter that differs between the runs. An empty cell is a
missing value; floats are written at full precision.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncsn.reporting.compare.summary import SCORES, Comparison
from ncsn.reporting.render import write_file

# Left out of "parameters that differ": where outputs were written, and the σ list (plotted).
IGNORED_PREFIXES = ("paths.",)
IGNORED_KEYS = {"sigmas"}
IDENTITY = ["run_name", "experiment", "started", "dataset", "profile", "git_commit", "extractor"]


def differing_params(params: pd.DataFrame) -> pd.DataFrame:
    """The columns of ``params`` (one row per run) whose values are not the same in every run
    (a missing value counts as one), sorted by key."""
    keys = sorted(k for k in params.columns if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES))
    frame = params[keys]
    return frame.loc[:, frame.nunique(dropna=False) > 1]


def csv_frame(comparison: Comparison) -> pd.DataFrame:
    """The CSV's table: one row per run, in column order, ``run_id`` first."""
    runs = comparison.runs
    registry = pd.DataFrame({
        "registered_model": runs["registered_model"].where(runs["model_version"].notna()),
        "model_version": runs["model_version"],
        "champion": runs["champion"].map({True: "true", False: "false"}),
        "champion_version": runs["champion_version"],
    })
    parts = [runs[IDENTITY + list(SCORES) + ["fid_over_floor"]],
             comparison.wall.add_prefix("wall_s:").assign(**{"wall_s:total": runs["total_seconds"]}),
             registry, differing_params(comparison.params).add_prefix("param:")]
    return pd.concat(parts, axis=1).rename_axis("run_id").reset_index()


def write_csv(comparison: Comparison, path: Path) -> Path:
    """Write :func:`csv_frame` to ``path`` atomically."""
    return write_file(path, csv_frame(comparison).to_csv(index=False).encode("utf-8"))
