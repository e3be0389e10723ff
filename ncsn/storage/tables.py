"""Atomic writers of the evaluation outputs: JSON (metrics), CSV (tables) and raw bytes (pictures)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from ncsn.storage.atomic import atomic_write


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one."""
    atomic_write(path, lambda f: f.write(data))


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
