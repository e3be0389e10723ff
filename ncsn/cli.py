"""The ``ncsn`` command: one thin sub-command per pipeline stage, plus ``ncsn pipeline`` and ``ncsn compare``.

Each stage lives in ``ncsn/stages/<name>.py`` and exposes
``run(cfg: Config, tracker: Tracker, args: argparse.Namespace) -> None`` and,
optionally, ``add_arguments(parser)``. The command loads and validates
``params.yaml`` once, opens the stage's MLflow run, and turns user errors into
one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import errno
import signal
import sys
from typing import Sequence

from ncsn.stages import STAGES


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every open MLflow run ends KILLED; exit code 143."""

    exit_code = 128 + int(signal.SIGTERM)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EACCES,
                 errno.EPERM, errno.EISDIR}


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the user can fix this": printed as one line, exit code 2."""
    from ncsn.storage.atomic import OutputError
    from ncsn.storage.checkpoint import CheckpointError
    from ncsn.config import ConfigError
    from ncsn.data import DataError
    from ncsn.evaluation import EvaluationError
    from ncsn.tracking.registry import RegistryError
    from ncsn.storage.shards import SampleError
    from ncsn.stages.train import TrainingDiverged
    from ncsn.storage.user_images import ImageInputError

    return (ConfigError, CheckpointError, DataError, TrainingDiverged, EvaluationError, RegistryError, SampleError,
            ImageInputError, OutputError, FileNotFoundError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    from ncsn.stages.help import stage_epilog

    parser = argparse.ArgumentParser(prog="ncsn", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name in STAGES:
        module = importlib.import_module(f"ncsn.stages.{name}")
        doc = (module.__doc__ or name).strip()
        stage_parser = sub.add_parser(name, help=doc.splitlines()[0], description=doc, epilog=stage_epilog(name),
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        if hasattr(module, "add_arguments"):
            module.add_arguments(stage_parser)
    from ncsn.stages import runner as pipeline

    pipeline.add_arguments(sub.add_parser("pipeline", help="run every stage of dvc.yaml in order, "
                                                         "inside one MLflow run"))
    from ncsn.reporting.compare import command as compare

    compare.add_arguments(sub.add_parser("compare", help="compare MLflow runs side by side: "
                                                       "one HTML page and a CSV"))
    from ncsn.tracking import sync

    sync.add_arguments(sub.add_parser("tracking", help="the MLflow store: `ncsn tracking sync` sends the runs"
                                                       " tracked locally (server down) to the server"))
    return parser


def _check_output(cfg, args: argparse.Namespace) -> None:
    """Fail in one line, before any work, when the stage's output folder cannot be written.

    The folder is ``--out`` when given (its parent for the report's file), else ``paths.<stage>``.
    """
    from pathlib import Path

    from ncsn.storage.atomic import check_writable

    out = getattr(args, "out", None)
    if out:
        if args.stage == "report":  # --out names the report's file
            check_writable(Path(out).parent, "--out", named=out)
        else:
            check_writable(out, "--out")
    else:
        check_writable(getattr(cfg.paths, args.stage), f"paths.{args.stage}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ncsn`` console script."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:  # called from a program with its own
        return _dispatch(args)
    signal.signal(signal.SIGTERM, _raise_terminated)
    if os.environ.get("DVC_STAGE") and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A stage that DVC runs for an `ncsn pipeline` started in the background (`ncsn pipeline &`
        # in a script ignores SIGINT in its children): the pipeline stops it with SIGINT, which must
        # end its run KILLED.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _dispatch(args)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _dispatch(args: argparse.Namespace) -> int:
    if args.stage == "tracking":
        from ncsn.tracking import sync

        return sync.run(args)
    if args.stage == "pipeline":
        from ncsn.stages import runner as pipeline

        return pipeline.run(args)
    if args.stage == "compare":
        from ncsn.reporting.compare import command as compare

        return compare.run(args)
    try:
        from ncsn.config import load_config
        from ncsn.tracking.runs import stage_run

        cfg = load_config(args.params)
        module = importlib.import_module(f"ncsn.stages.{args.stage}")
        if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 tracks
            cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, enabled=False))
        _check_output(cfg, args)
        with stage_run(cfg, args.stage, args.params) as tracker:
            module.run(cfg, tracker, args)
    except _user_errors() as err:
        if args.debug:
            raise
        print(f"ncsn {args.stage}: error: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:
        # A full disk, a file-size limit or an output path that is not a folder: the user's to fix.
        from ncsn.storage.atomic import os_error_in

        cause = os_error_in(err)
        if cause is None or args.debug:
            raise
        where = f" {cause.filename}" if cause.filename else ""
        verb = "cannot write" if cause.errno in _WRITE_ERRNOS else "input/output error on"
        print(f"ncsn {args.stage}: error: {verb}{where}: {cause.strerror or cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        print(f"ncsn {args.stage}: interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    finally:
        if "torch.distributed" in sys.modules:  # a torchrun rank leaves its process group before exiting
            from ncsn.stages.distributed import leave_process_group

            leave_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
