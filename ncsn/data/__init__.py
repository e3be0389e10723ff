"""The data layer: datasets, the prepare stage's files and the training-time transforms.

* :func:`prepare` writes ``train.pt`` / ``test.pt`` / ``stats.json`` (``ncsn/data/prepare.py``);
* :func:`load_split` and :func:`read_stats` read them back (``ncsn/data/io.py``);
* :mod:`ncsn.data.transforms`: stored uint8 pixels ↔ model input.
"""

from ncsn.data.errors import DataError
from ncsn.data.io import PreparedSplit, load_split, read_stats
from ncsn.data.prepare import prepare

__all__ = ["DataError", "PreparedSplit", "load_split", "prepare", "read_stats"]
