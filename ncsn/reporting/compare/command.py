"""The ``ncsn compare`` sub-command: choose runs, summarise them, write the page and the CSV."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ncsn.reporting.compare.select import CompareError, Store, open_store, select_runs, store_uri

if TYPE_CHECKING:
    import pandas as pd

PAGE = "comparison.html"
TABLE = "comparison.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ncsn compare``."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help=f"folder to write {PAGE} and {TABLE} into (created if missing)")
    parser.add_argument("--experiment", metavar="NAME", help="only runs of this MLflow experiment")
    parser.add_argument("--dataset", dest="datasets", nargs="+", default=[], metavar="D",
                        help="only runs of these datasets (default: the latest run of every dataset)")
    parser.add_argument("--run-ids", nargs="+", default=[], metavar="ID",
                        help="exactly these runs (pipeline runs, or stage runs standing for theirs)")


def write_comparison(store: Store, runs: pd.DataFrame, out_dir: Path, selection: str) -> tuple[Path, Path]:
    """Write the page and the CSV of ``runs`` (rows of :func:`select_runs`) into ``out_dir``, atomically.

    :return: the paths of the page and of the CSV.
    """
    from ncsn.reporting.compare.page import render_page
    from ncsn.reporting.compare.summary import compare
    from ncsn.reporting.compare.table import write_csv
    from ncsn.reporting.render import write_file

    comparison = compare(store, runs)
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = render_page(comparison, store=store.uri, selection=selection, generated=generated)
    page = write_file(Path(out_dir) / PAGE, text.encode("utf-8"))
    return page, write_csv(comparison, Path(out_dir) / TABLE)


def _selection(args: argparse.Namespace) -> str:
    if args.run_ids:
        return "the runs " + ", ".join(args.run_ids)
    where = f"experiment {args.experiment}" if args.experiment else "every experiment"
    which = f"datasets {', '.join(args.datasets)}" if args.datasets else "each dataset"
    return f"the latest finished pipeline run of {which}, in {where}"


def run(args: argparse.Namespace) -> int:
    """Run ``ncsn compare``. Exit code 0: written, 2: a user error (one line on stderr)."""
    from ncsn.config import ConfigError

    try:
        store = open_store(store_uri(args.params))
        runs = select_runs(store, experiment=args.experiment, datasets=args.datasets, run_ids=args.run_ids)
        page, table = write_comparison(store, runs, args.out, _selection(args))
    except (CompareError, ConfigError) as err:
        if args.debug:
            raise
        print(f"ncsn compare: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if args.debug:
            raise
        print(f"ncsn compare: error: cannot write {err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"ncsn compare: {len(runs)} run(s) -> {page} and {table}")
    return 0
