"""Off a terminal, progress is a plain line at every 10 % (and at the end), not a carriage-return bar."""

from __future__ import annotations

import io

from ncsn.data.progress import PlainProgress, progress


def test_a_pipe_gets_one_line_per_tenth_and_no_carriage_returns() -> None:
    out = io.StringIO()
    bar = PlainProgress(total=200, desc="train", file=out)
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="0.1234")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 10
    assert lines[0].startswith("train: 20/200 (10 %), ") and lines[-1].startswith("train: 200/200 (100 %), ")
    assert lines[-1].endswith("loss=0.1234")


def test_iterating_counts_and_ends_with_the_total() -> None:
    out = io.StringIO()
    items = list(PlainProgress(range(7), desc="inpaint", unit="img", file=out, initial=0))
    assert items == list(range(7)) and out.getvalue().splitlines()[-1].startswith("inpaint: 7/7 (100 %)")
    quiet = io.StringIO()
    list(PlainProgress(range(5), desc="x", disable=True, file=quiet))
    assert quiet.getvalue() == ""


def test_pytest_capture_is_no_terminal_so_progress_is_plain() -> None:
    assert isinstance(progress(range(3), desc="x"), PlainProgress)
