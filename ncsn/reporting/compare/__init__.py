"""``ncsn compare``: several MLflow runs side by side, as one self-contained HTML page and a CSV.

* ``select`` -- the store and the runs chosen (by experiment, dataset or id; default: the latest
  pipeline run of each dataset), as ``mlflow.search_runs`` frames;
* ``summary`` -- what the runs measured, read back from their stage runs, artifacts and the
  registry, as frames with one row per run;
* ``table`` -- the differing parameters and the CSV;
* ``page`` -- the HTML page (``templates/compare.html``; the σ schedules overlaid by
  ``ncsn.figures.sigma_schedule``);
* ``command`` -- the sub-command.
"""

from ncsn.reporting.compare.command import write_comparison
from ncsn.reporting.compare.select import CompareError

__all__ = ["CompareError", "write_comparison"]
