"""Assemble the report: a summary, then one section per part of the run, rendered through
``templates/report.html`` and written atomically."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ncsn.config import Config
from ncsn.evaluation import FID_KINDS
from ncsn.reporting.provenance import section_warnings
from ncsn.reporting import sections as S
from ncsn.reporting.environment import git_commit
from ncsn.reporting.render import fmt, render, write_file

REPORT_FILE = "report.html"
TITLE = "NCSN run report"

SECTIONS = (S.params_section, S.sigmas_section, S.training_section, S.samples_section, S.metrics_section,
            S.checkpoints_section, S.figures_section, S.timings_section, S.machine_section)


def summary_section(inputs: S.Inputs) -> S.Data:
    """The headline numbers of every stage, and how many of the expected input files exist."""
    cfg = inputs.cfg
    rows: list[tuple[str, Any]] = [
        ("dataset / model", f"{cfg.base.dataset} / {cfg.model.arch} (ngf {cfg.model.ngf})"),
    ]
    sigmas = inputs.sigmas()
    if sigmas:
        rows.append(("noise levels", f"L = {len(sigmas)}, σ {sigmas[0]:.4g} → {sigmas[-1]:.4g}"))
    train_rows = inputs.csv("train_log")
    if train_rows:
        rows.append(("training steps, last loss", f"{train_rows[-1].get('step')}, {train_rows[-1].get('loss')}"))
    metrics = inputs.json("metrics") or {}
    for key in [k for fid in FID_KINDS for k in (fid, f"{FID_KINDS[fid]['prefix']}is")]:
        if key in metrics:
            floor, real = metrics.get(f"floor_{key}_train_vs_test"), metrics.get(f"reference_{key}_test")
            rows.append((key, fmt(metrics[key]) + (f" (real-vs-real floor {fmt(floor)})" if floor is not None else "")
                         + (f" (test images: {fmt(real)})" if real is not None else "")))
    if "best_checkpoint_step" in metrics:
        rows.append(("selected checkpoint", metrics["best_checkpoint_step"]))
    numbers = inputs.json("figures_json") or {}
    fig1 = numbers.get("fig1_score_accuracy", {})
    if fig1:
        rows.append(("fig. 1 score error near / far from the modes",
                     f"{fmt(fig1.get('error_high_density'))} / {fmt(fig1.get('error_low_density'))}"))
    panels = numbers.get("fig3_langevin", {}).get("panels", {})
    for scores in ("exact", "learned"):
        plain, annealed = panels.get(f"plain_{scores}"), panels.get(f"annealed_{scores}")
        if plain and annealed:
            rows.append((f"fig. 3 weight of the (−5,−5) mode (true 0.2), {scores} scores",
                         f"plain Langevin {fmt(plain.get('weight'))}, annealed {fmt(annealed.get('weight'))}"))
    present = sum(inputs.path(k).is_file() for k in S.FILES)
    return {"id": "summary", "title": "Summary", "missing": None, "rows": rows, "present": present,
            "expected": len(S.FILES)}


def report_context(cfg: Config) -> dict[str, Any]:
    """What ``templates/report.html`` shows of the run whose files ``cfg.paths`` points at."""
    inputs = S.Inputs(cfg)
    sections = [summary_section(inputs), *(make(inputs) for make in SECTIONS)]
    warnings = section_warnings(cfg, inputs.json("metrics"), inputs.json("figures_json"))
    for section in sections:
        section["stale"] = warnings.get(section["id"], [])
    return {
        "title": TITLE,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "profile": cfg.profile,
        "dataset": cfg.base.dataset,
        "commit": git_commit() or "not recorded",
        "sections": sections,
    }


def render_report(cfg: Config) -> str:
    """The report of the run whose files ``cfg.paths`` points at, as one HTML string."""
    return render("report.html", report_context(cfg))


def write_report(cfg: Config, out_path: str | Path | None = None) -> Path:
    """Render and write the report atomically (default ``paths.report/report.html``).

    :raises OSError: when it cannot be written; the error names ``out_path``.
    """
    path = Path(out_path) if out_path is not None else Path(cfg.paths.report) / REPORT_FILE
    return write_file(path, render_report(cfg).encode("utf-8"))
