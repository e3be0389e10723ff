"""Progress of long loops: a tqdm bar on a terminal, plain lines in a log file or a pipe.

A tqdm bar redraws itself with carriage returns, which a file or a pipe keeps as one ever longer
line. Off a terminal, :func:`progress` prints one line instead at every 10 % and at least every
30 s (``desc: 300/1000 (30 %), 12.5 it/s, loss=0.1234``), and a last one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

EVERY_FRACTION = 0.1
EVERY_SECONDS = 30.0


class PlainProgress:
    """The part of tqdm's interface the stages use, printed as plain lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 initial: int = 0, unit: str = "it", disable: bool = False, file: TextIO | None = None) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.n, self.unit, self.disable = total, desc, initial, unit, disable
        self.file = file or sys.stderr
        self._start_n, self._start, self._last = initial, time.monotonic(), time.monotonic()
        self._printed_n, self._postfix, self._closed = initial, "", False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        step = max(1, int(EVERY_FRACTION * self.total)) if self.total else None
        if (step and self.n - self._printed_n >= step) or now - self._last >= EVERY_SECONDS:
            self._print(now)

    def close(self) -> None:
        if not self._closed and self.n != self._printed_n:
            self._print(time.monotonic())
        self._closed = True

    def _print(self, now: float) -> None:
        if self.disable:
            return
        self._printed_n, self._last = self.n, now
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else f"{self.n}"
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        tail = f", {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {done}, {rate:.3g} {self.unit}/s{tail}", file=self.file, flush=True)


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", initial: int = 0,
             unit: str = "it", disable: bool = False, **tqdm_options: Any) -> tqdm | PlainProgress:
    """A progress bar over ``iterable`` (or updated by hand up to ``total``): tqdm on a terminal, else plain lines."""
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                    dynamic_ncols=True, **tqdm_options)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial, unit=unit, disable=disable)
