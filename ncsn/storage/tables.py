"""Atomic writers of the stages' small outputs: JSON (metrics), CSV (tables, the σ schedule) and raw bytes."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from torch import Tensor

from ncsn.storage.atomic import atomic_write


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one."""
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, obj: dict[str, Any]) -> None:
    """Pretty JSON, non-finite floats as null."""
    text = json.dumps({k: _finite(v) for k, v in obj.items()}, indent=2) + "\n"
    write_bytes(path, text.encode())


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A CSV with a header row; floats with 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows])
    write_bytes(path, buffer.getvalue().encode())


def write_sigmas_csv(path: str | Path, sigmas: Sequence[float] | Tensor) -> None:
    """``sigmas.csv``: a ``level,sigma`` row per noise level (8 significant digits).

    :param sigmas: [L] noise levels.
    """
    values = sigmas.tolist() if isinstance(sigmas, Tensor) else [float(s) for s in sigmas]
    write_csv(path, ["level", "sigma"], [[i, f"{s:.8g}"] for i, s in enumerate(values)])
