"""One self-contained HTML report per run (the ``report`` stage).

``write_report(cfg)`` reads what the other stages wrote under ``cfg.paths`` and writes
``paths.report/report.html``: parameters, noise levels, loss curves, samples, metrics with
their real-vs-real floor, checkpoint selection, the paper's figures 1-6, timings and the
machine. Images are embedded as ``data:`` URIs, so the file opens offline; a missing input
leaves its section saying which ``dvc repro`` makes it.

* ``ncsn/reporting/html.py``: HTML building blocks (embedding, tables, the page);
* ``ncsn/reporting/plots.py``: the plots drawn from the stages' CSV files;
* ``ncsn/reporting/sections.py``: one function per section, and the list of input files;
* ``ncsn/reporting/captions.py``: the captions of the paper's figures and the sampler line;
* ``ncsn/reporting/environment.py``: machine, git commit and MLflow stage wall times;
* ``ncsn/reporting/build.py``: the summary, the assembly and the atomic write.
"""

from ncsn.reporting.build import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
