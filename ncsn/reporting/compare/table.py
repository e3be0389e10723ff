"""The numbers of the comparison as rows: the differing parameters, the stages, the CSV.

One CSV row per run: identity (run, dataset, profile, commit), the scores and FID ÷ floor, wall
seconds per stage, the registered version, its champion flag and the champion's version, then
one ``param:<key>`` column per parameter that differs between the runs.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, Sequence

from ncsn.reporting.compare.summary import SCORES, RunSummary

# Left out of "parameters that differ": where outputs were written, and the σ list (plotted).
IGNORED_PREFIXES = ("paths.",)
IGNORED_KEYS = {"sigmas"}


def started(summary: RunSummary) -> str:
    """The run's start as ``YYYY-MM-DD HH:MM:SS UTC``."""
    when = dt.datetime.fromtimestamp(summary.start_ms / 1000, tz=dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def differing_params(summaries: Sequence[RunSummary]) -> list[str]:
    """The parameter keys whose values are not the same in every run (a missing key counts), sorted."""
    keys = sorted({k for s in summaries for k in s.params})
    keys = [k for k in keys if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)]
    return [k for k in keys if len({s.params.get(k) for s in summaries}) > 1]


def stage_order(summaries: Sequence[RunSummary]) -> list[str]:
    """Every stage that ran in any run, in the order the pipeline runs them (first seen first)."""
    order: list[str] = []
    for summary in summaries:
        for stage in summary.stage_seconds:
            if stage not in order:
                order.append(stage)
    return order


def rows(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """One dict per run, in CSV column order (missing values are None)."""
    stages, params = stage_order(summaries), differing_params(summaries)
    out = []
    for s in summaries:
        row: dict[str, Any] = {
            "run_id": s.run_id, "run_name": s.name, "experiment": s.experiment, "started": started(s),
            "dataset": s.dataset, "profile": s.profile, "git_commit": s.git_commit, "extractor": s.extractor,
        }
        row |= {key: s.metrics.get(key) for key in SCORES}
        row["fid_over_floor"] = s.fid_over_floor
        row |= {f"wall_s:{stage}": s.stage_seconds.get(stage) for stage in stages}
        row["wall_s:total"] = s.total_seconds
        row |= {"registered_model": s.registered_model if s.model_version else None,
                "model_version": s.model_version, "champion": s.champion,
                "champion_version": s.champion_version}
        row |= {f"param:{key}": s.params.get(key) for key in params}
        out.append(row)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(summaries: Sequence[RunSummary], path: Path) -> Path:
    """Write :func:`rows` to ``path`` (empty cell = missing; floats at full precision)."""
    table = rows(summaries)
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in table)
    return Path(path)
