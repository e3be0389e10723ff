"""The comparison as one self-contained HTML page: inline CSS, images as ``data:`` URIs, no script.

Sections: the runs (dataset, profile, commit, registered version), the scores with each
dataset's floor and FID ÷ floor, the parameters that differ, the σ schedules overlaid, the
sample grids side by side, and the wall time of each stage.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

from ncsn.reporting.compare.summary import RunSummary
from ncsn.reporting.compare.table import differing_params, stage_order, started

GRID_WIDTH = 540  # sample grids narrower than this are enlarged towards it (two side by side)

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #dde1e7; }
p.meta, p.note { color: #5b6474; margin: 4px 0; font-size: 13px; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { padding: 6px 12px; border-bottom: 1px solid #eceff3; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; font-size: 13px; }
th.num { text-align: right; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.ratio { font-weight: 700; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; font-size: 12px; font-weight: 600;
         background: #fcefc7; color: #7a5300; }
.muted { color: #8a93a3; }
.grids { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; background: #fff; padding: 10px; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
figcaption { font-size: 13px; color: #3a4252; margin-top: 6px; }
img { max-width: 100%; }
img.pixelated { image-rendering: pixelated; }
.scroll { overflow-x: auto; }
"""


def esc(value: Any) -> str:
    """Text → HTML-safe text."""
    return html.escape(str(value), quote=True)


def num(value: float | None, digits: int = 4) -> str:
    """A number to ``digits`` significant digits; ``—`` when missing."""
    return "—" if value is None else f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    """``42.1 s``, ``3 min 05 s`` or ``—``."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def image(data: bytes, alt: str, *, enlarge_to: int | None = None) -> str:
    """An ``<img>`` holding the PNG bytes themselves.

    :param enlarge_to: draw an image narrower than this at up to twice its size, at most this
        wide (exactly twice: pixelated, so that pixels stay sharp).
    """
    style = ""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            width = im.width
    except (ImportError, OSError):
        width = None
    if enlarge_to is not None and width is not None and width < enlarge_to:
        shown = min(enlarge_to, 2 * width)
        crisp = ' class="pixelated"' if shown == 2 * width else ""
        style = f'{crisp} style="width:{shown}px"'
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{uri}" alt="{esc(alt)}"{style}>'


def _head(summaries: Sequence[RunSummary], first: str, cls: str = "") -> str:
    cells = "".join(f"<th class='{cls}'>{esc(s.dataset)}<br><code class='muted'>{esc(s.run_id[:8])}</code></th>"
                    for s in summaries)
    return f"<tr><th>{esc(first)}</th>{cells}</tr>"


def _runs(summaries: Sequence[RunSummary]) -> str:
    body = []
    for s in summaries:
        version = "—" if s.model_version is None else f"{esc(s.registered_model)} v{esc(s.model_version)}"
        badge = ' <span class="badge">champion</span>' if s.champion else ""
        if not s.champion and s.champion_version is not None:
            badge = f" <span class='muted'>(champion: v{esc(s.champion_version)})</span>"
        commit = s.git_commit if s.git_commit == "unknown" else s.git_commit[:12]
        body.append(f"<tr><td>{esc(s.name)}<br><code class='muted'>{esc(s.run_id)}</code></td>"
                    f"<td>{esc(s.dataset)}</td><td>{esc(s.profile)}</td><td><code>{esc(commit)}</code></td>"
                    f"<td>{esc(s.experiment)}</td><td>{esc(started(s))}</td><td>{version}{badge}</td></tr>")
    head = ("<tr><th>run</th><th>dataset</th><th>profile</th><th>git commit</th><th>experiment</th>"
            "<th>started</th><th>registered version</th></tr>")
    return f"<div class='scroll'><table>{head}{''.join(body)}</table></div>"


def _scores(summaries: Sequence[RunSummary]) -> str:
    body = []
    for s in summaries:
        m = s.metrics
        kid = "—" if m.get("kid_mean") is None else f"{num(m['kid_mean'], 3)} ± {num(m.get('kid_std'), 2)}"
        n = "—" if m.get("n_samples") is None else f"{m['n_samples']:.0f}"
        body.append(f"<tr><td>{esc(s.label)}</td><td>{esc(s.extractor or '—')}</td><td class='num'>{n}</td>"
                    f"<td class='num'>{num(m.get('is'))}</td><td class='num'>{num(m.get('reference_is'))}</td>"
                    f"<td class='num'>{num(m.get('fid'))}</td><td class='num'>{num(m.get('floor_fid'))}</td>"
                    f"<td class='num ratio'>{num(s.fid_over_floor, 3)}</td><td class='num'>{kid}</td>"
                    f"<td class='num'>{num(m.get('floor_kid_mean'), 3)}</td></tr>")
    numeric = ("samples", "IS", "IS of real test", "FID", "floor FID", "FID ÷ floor", "KID", "floor KID")
    head = ("<tr><th>run</th><th>feature extractor</th>"
            + "".join(f"<th class='num'>{esc(h)}</th>" for h in numeric) + "</tr>")
    note = ("<p class='note'>Floor: the same score between the dataset's own training and test images "
            "(as many training images as samples), the best a model can reach on that dataset. FID ÷ floor "
            "puts datasets on one scale: 1 is as close as real data, lower is better. Scores measured with "
            "different feature extractors are not comparable.</p>")
    return f"<div class='scroll'><table>{head}{''.join(body)}</table></div>{note}"


def _params(summaries: Sequence[RunSummary]) -> str:
    keys = differing_params(summaries)
    if not keys:
        return "<p class='note'>Every parameter is the same in all runs.</p>"
    body = "".join(f"<tr><td class='key'>{esc(k)}</td>"
                   + "".join(f"<td>{esc(s.params.get(k, '—'))}</td>" for s in summaries) + "</tr>" for k in keys)
    return f"<div class='scroll'><table>{_head(summaries, 'parameter')}{body}</table></div>"


def _grids(summaries: Sequence[RunSummary]) -> str:
    figures = []
    for s in summaries:
        inner = (image(s.grid_png, f"samples of {s.label}", enlarge_to=GRID_WIDTH) if s.grid_png
                 else "<p class='muted'>no sample grid (the sample stage did not run in this run)</p>")
        figures.append(f"<figure>{inner}<figcaption>{esc(s.label)}</figcaption></figure>")
    return f"<div class='grids'>{''.join(figures)}</div>"


def _wall(summaries: Sequence[RunSummary]) -> str:
    rows = []
    for stage in stage_order(summaries):
        cells = "".join(f"<td class='num'>{duration(s.stage_seconds.get(stage))}</td>" for s in summaries)
        rows.append(f"<tr><td>{esc(stage)}</td>{cells}</tr>")
    total = "".join(f"<td class='num'><b>{duration(s.total_seconds)}</b></td>" for s in summaries)
    rows.append(f"<tr><td><b>whole run</b></td>{total}</tr>")
    note = ("<p class='note'>— : the stage did not run (DVC found it up to date, or it failed). The whole run"
            " also counts DVC's own work between stages.</p>")
    return f"<div class='scroll'><table>{_head(summaries, 'stage', 'num')}{''.join(rows)}</table></div>{note}"


def render(summaries: Sequence[RunSummary], *, sigma_png: bytes | None, store: str, selection: str,
           generated: str) -> str:
    """The whole page as text."""
    sources = sorted({s.sigmas_source for s in summaries if s.sigmas})
    sigma = (image(sigma_png, "noise levels of each run") if sigma_png
             else "<p class='muted'>no σ schedule recorded in these runs</p>")
    sigma_note = f"<p class='note'>σ from: {esc(', '.join(sources))}.</p>" if sources else ""
    sections = [
        ("Runs", _runs(summaries)),
        ("Scores", _scores(summaries)),
        ("Parameters that differ", _params(summaries)),
        ("Noise levels σ₁ > … > σ_L", sigma + sigma_note),
        ("Samples", _grids(summaries)),
        ("Wall time per stage", _wall(summaries)),
    ]
    body = "".join(f"<section><h2>{esc(title)}</h2>{content}</section>" for title, content in sections)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>NCSN run comparison</title><style>{CSS}</style></head><body><main>"
            "<h1>NCSN run comparison</h1>"
            f"<p class='meta'>{len(summaries)} run(s): {esc(selection)}. Store <code>{esc(store)}</code>. "
            f"Generated {esc(generated)}.</p>{body}</main></body></html>\n")
