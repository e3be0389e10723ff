"""``ncsn pipeline``: run the DVC pipeline stage by stage, inside one MLflow parent run.

``dvc.yaml`` is the one definition of the graph; the runner only asks DVC for it
(``ncsn.stages.graph``), writes ``params.yaml`` from ``-S`` overrides and validates it
(``ncsn.stages.overrides``), and runs one ``dvc repro --single-item STAGE`` per stage
(``ncsn.stages.repro``). One ``dvc repro`` per stage, inside one MLflow parent run
(``ncsn.tracking.parent_run.pipeline_run``), makes each stage's MLflow run a child of that parent.
The Prefect flow (``flows/pipeline.py``) uses the same pieces.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ncsn.config import ConfigError
from ncsn.stages.graph import find_repo, stage_order, stage_outputs
from ncsn.stages.overrides import apply_overrides, params_restored
from ncsn.stages.repro import StageFailed, repro_stage
from ncsn.stages.results import results_summary

if TYPE_CHECKING:
    from ncsn.config import Config

EVALUATE = "evaluate"  # the stage whose metrics.json holds the headline figures


def absolute_paths(cfg: Config, repo: Path) -> Config:
    """``cfg`` with its relative ``paths`` made absolute under ``repo`` (the stages run there)."""
    paths = {k: v if Path(v).is_absolute() else str(repo / v)
             for k, v in dataclasses.asdict(cfg.paths).items()}
    return dataclasses.replace(cfg, paths=type(cfg.paths)(**paths))


def parent_run(cfg: Config, repo: Path) -> contextlib.AbstractContextManager:
    """The MLflow parent run of one pipeline execution (``ncsn.tracking.parent_run.pipeline_run``).

    It exports ``NCSN_MLFLOW_PARENT_RUN_ID`` so each stage's run nests under it.
    """
    from ncsn.tracking.parent_run import pipeline_run

    return pipeline_run(absolute_paths(cfg, repo), repo)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ncsn pipeline``."""
    parser.add_argument("target", nargs="?", metavar="STAGE",
                        help="run only this stage and the stages it depends on, as `dvc repro STAGE`"
                             " (default: every stage)")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a value in params.yaml, as `dvc exp run -S` (repeatable), "
                             "e.g. -S profile=smoke -S train.lr=5e-4")
    parser.add_argument("--restore-params", action="store_true",
                        help="put params.yaml back as it was once the run ends")
    parser.add_argument("--require-tracking", action="store_true",
                        help="exit with 2 when the tracking server cannot be reached, instead of tracking"
                             " into the local store (outputs/mlflow) for a later `ncsn tracking sync`")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit with 2 when another ncsn pipeline runs in this repository, instead of"
                             " waiting for it")


def run(args: argparse.Namespace) -> int:
    """Run the pipeline (up to ``args.target``). Exit code 0: done, 1: a stage failed, 2: a user error."""
    from dvc.exceptions import DvcException

    from ncsn.stages.repo_lock import PipelineBusy, pipeline_lock

    try:
        repo = find_repo()
        with pipeline_lock(repo, wait=not args.no_wait, say=lambda line: print(line, flush=True)):
            with params_restored(repo, restore=args.restore_params):
                cfg = apply_overrides(repo, args.overrides)
                stages = stage_order(repo, args.target)
                print(f"ncsn pipeline: stages {' -> '.join(stages)} (profile {cfg.profile})", flush=True)
                if (refused := _tracking_refused(cfg, repo, args.require_tracking)) is not None:
                    print(refused, file=sys.stderr)
                    return 2
                with parent_run(cfg, repo) as tracker:
                    for stage in stages:
                        _before_stage(tracker)
                        print(f"ncsn pipeline: running stage '{stage}'", flush=True)
                        repro_stage(repo, stage)
                    if EVALUATE in stages:
                        _log_headline(tracker, cfg, repo)
                print(results_summary(Path(absolute_paths(cfg, repo).paths.evaluate) / "metrics.json"), end="")
                print("Outputs:")
                for stage, outs in stage_outputs(repo).items():
                    if stage in stages:
                        print(f"  {stage}: {', '.join(outs)}")
                print(f"ncsn pipeline: done; {_tracking_summary(cfg, repo)}", flush=True)
    except PipelineBusy as err:
        print(f"ncsn pipeline: {err}", file=sys.stderr)
        return 2
    except (ConfigError, DvcException) as err:
        print(f"ncsn pipeline: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"ncsn pipeline: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (ncsn.cli.Terminated)
        print("ncsn pipeline: interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    return 0


def _tracking_refused(cfg: Config, repo: Path, required: bool) -> str | None:
    """Preflight of the tracking store (``ncsn.tracking.store.preflight``), and runs left RUNNING by
    dead processes closed; the line to exit with when the server is required and cannot be reached."""
    if not cfg.tracking.enabled:
        return None
    from ncsn.tracking.parent_run import close_orphan_runs
    from ncsn.tracking.store import preflight

    cfg = absolute_paths(cfg, repo)
    uri, reason = preflight(cfg)
    if reason is not None and required:
        return f"ncsn pipeline: error: tracking server {uri} unavailable ({reason}); not running (--require-tracking)"
    close_orphan_runs(cfg, server_up=reason is None)
    return None


def _before_stage(tracker) -> None:
    from ncsn.tracking.parent_run import before_stage

    before_stage(tracker)


def _log_headline(tracker, cfg: Config, repo: Path) -> None:
    """FID, IS, KID, bits/dim and the model version on the parent run (``ncsn.tracking.headline``)."""
    if not cfg.tracking.enabled:
        return
    from ncsn.tracking.headline import log_headline

    log_headline(tracker, absolute_paths(cfg, repo))


def _tracking_summary(cfg: Config, repo: Path) -> str:
    """Where the runs went, and how many local runs wait for ``ncsn tracking sync``."""
    if not cfg.tracking.enabled:
        return "tracking off"
    from ncsn.tracking.store import tracking_uri
    from ncsn.tracking.sync import waiting_runs

    cfg = absolute_paths(cfg, repo)
    waiting = waiting_runs(cfg)
    line = f"runs tracked in {tracking_uri(cfg)}"
    return line + (f"; {waiting} run(s) in the local store wait for `ncsn tracking sync`" if waiting else "")


def main(argv: Sequence[str] | None = None) -> int:
    """``ncsn pipeline [STAGE] [-S KEY=VALUE ...] [--restore-params]``."""
    parser = argparse.ArgumentParser(prog="ncsn pipeline", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
