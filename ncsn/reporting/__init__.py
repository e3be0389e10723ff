"""One self-contained HTML report per run (the ``report`` stage).

``write_report(cfg)`` reads what the other stages wrote under ``cfg.paths`` and writes
``paths.report/report.html``: parameters, noise levels, loss curves, samples, metrics with
their real-vs-real floor, checkpoint selection, the paper's figures 1-6, timings and the
machine. Images are embedded as ``data:`` URIs, so the file opens offline; a missing input
leaves its section saying which ``dvc repro`` makes it.

* ``ncsn/reporting/templates/``: the jinja2 templates (``base.html``, ``macros.html``,
  ``report.html``, ``report_sections.html``, ``compare.html``) and the one ``style.css``;
* ``ncsn/reporting/render.py``: the template environment (autoescape), its filters, the image
  embedder and the atomic write of a page;
* ``ncsn/reporting/plots.py``: the plots drawn from the stages' CSV files (the σ schedule's is
  ``ncsn.figures.sigma_schedule``);
* ``ncsn/reporting/sections.py``: one function per section, returning its data, and the list of input files;
* ``ncsn/reporting/captions.py``: the panels of figure 3 and the sampler line (read from the shard manifest);
* ``ncsn/reporting/environment.py``: machine, git commit and MLflow stage wall times;
* ``ncsn/reporting/build.py``: the summary, the assembly and the atomic write.
"""

from ncsn.reporting.build import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
