"""``ncsn compare``: several MLflow runs side by side, as one self-contained HTML page and a CSV.

* ``select`` -- the store and the runs chosen (by experiment, dataset or id; default: the latest
  pipeline run of each dataset);
* ``summary`` -- what one run measured, read back from its stage runs, artifacts and the registry;
* ``table`` -- the differing parameters and the CSV rows;
* ``plot`` and ``page`` -- the σ schedules overlaid, and the HTML page;
* ``command`` -- the sub-command.
"""

from ncsn.reporting.compare.command import write_comparison
from ncsn.reporting.compare.select import CompareError

__all__ = ["CompareError", "write_comparison"]
