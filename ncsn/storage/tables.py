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


class CsvLog:
    """A CSV that grows by rows, rewritten whole (atomically) at each row; on resume it keeps the
    rows up to the step it resumes from."""

    def __init__(self, path: Path, header: list[str], resume_step: int) -> None:
        self.path, self.header = path, header
        self.rows: list[list[Any]] = []
        if resume_step > 0 and path.is_file():
            with path.open() as f:
                self.rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= resume_step]
        write_csv(path, header, self.rows)

    def append(self, row: list[Any]) -> None:
        self.rows.append(row)
        write_csv(self.path, self.header, self.rows)
