"""The data layer: datasets, the prepare stage's files, training-time transforms and batches.

* :func:`prepare` writes ``train.pt`` / ``test.pt`` / ``stats.json`` (``ncsn/data/prepare.py``);
* :func:`load_split` and :func:`read_stats` read them back (``ncsn/data/io.py``);
* :mod:`ncsn.data.transforms`: stored uint8 pixels ↔ model input;
* :class:`BatchSampler`: resumable shuffled index batches.
"""

from ncsn.data.errors import DataError
from ncsn.data.io import PreparedSplit, load_split, read_stats
from ncsn.data.prepare import prepare
from ncsn.data.sampler import BatchSampler

__all__ = ["BatchSampler", "DataError", "PreparedSplit", "load_split", "prepare", "read_stats"]
