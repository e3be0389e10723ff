"""The ncsn pipeline as a Prefect 3 flow: one task per DVC stage, independent stages at once.

The graph is DVC's (``ncsn.stages.graph.stage_graph`` reads ``dvc.yaml`` through DVC's index):
each stage is submitted as a task future that waits for the futures of its upstream stages,
so ``classifier``, ``train`` and ``figures`` run together once ``prepare`` is done, then
``sample`` and ``inpaint``. With ``parallel=False`` each stage waits for the previous one.

DVC's repository lock: each task runs ``dvc --wait-for-lock repro --single-item STAGE``. DVC
takes the repository lock only for the short parts of a stage (reading the index, the change
and run-cache checks, hashing the outputs, committing them to the cache and writing the stage's
entry of ``dvc.lock``) and releases it while the stage's command runs; per-path read/write
locks still guard the files. Without ``--wait-for-lock`` a ``dvc`` that finds the lock taken
gives up after 3 s, and a stage can fail *after* its command finished, when DVC takes the lock
back to commit. Waiting instead serialises only those short parts and keeps DVC's own
bookkeeping: every stage is recorded in ``dvc.lock`` (and the run cache) exactly as by
``dvc repro``, so ``dvc status`` is clean after the flow. A lock held by a process that died is
released by the kernel (DVC's lock is an ``flock``), so the wait cannot hang on a stale lock.

The whole flow holds the repository's pipeline lock (``ncsn.stages.repo_lock``), as ``ncsn
pipeline`` does: a flow and a pipeline (or two flows) in one repository take turns, the later
one saying whom it waits for, instead of racing on ``params.yaml`` and the outputs.

A task is retried only when its failure looks transient (the stage was killed from outside);
a bad parameter is rejected before any task starts. The run's page in the Prefect UI shows the
training progress, the evaluate metrics and the champion decision (``flows.artifacts``).

Run it without a server (Prefect's ephemeral mode) or against ``PREFECT_API_URL``::

    python -m flows.pipeline --profile smoke
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from flows.artifacts import publish_metrics, publish_summary, training_progress
from ncsn.stages.graph import stage_graph
from ncsn.stages.overrides import apply_overrides, params_restored
from ncsn.stages.repo_lock import pipeline_lock
from ncsn.stages.repro import StageFailed, repro_stage
from ncsn.stages.runner import absolute_paths, parent_run
from ncsn.tracking.headline import log_headline

REPO = Path(__file__).resolve().parents[1]  # the DVC repository the flow runs in by default
TRAIN_STAGE = "train"  # the stage whose train_log.csv feeds the progress artifact


def _retry_if_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a stage only if its failure may not happen again."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, StageFailed) and error.transient


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_if_transient,
      cache_policy=NO_CACHE, log_prints=True)
def dvc_stage(repo: str, stage: str, train_log: str | None = None, total_steps: int = 0) -> str:
    """``dvc --wait-for-lock repro --single-item STAGE`` (DVC skips it when nothing changed).

    :param train_log: when given, a progress artifact follows this ``train_log.csv`` meanwhile.
    :param total_steps: the step count that is 100 % of that progress.
    """
    progress = training_progress(Path(train_log), total_steps) if train_log else contextlib.nullcontext()
    with progress:
        repro_stage(Path(repo), stage, wait_for_lock=True)
    return stage


@flow(name="ncsn-pipeline", log_prints=True)
def ncsn_pipeline(dataset: str = "mnist5k", profile: str = "cpu", overrides: list[str] | None = None,
                  restore_params: bool = False, parallel: bool = True, repo: str | None = None) -> list[str]:
    """Train, sample, evaluate and inpaint with NCSN: every stage of dvc.yaml, following its DAG.

    :param dataset: ``base.dataset`` in params.yaml.
    :param profile: ``profile`` in params.yaml (smoke | cpu | paper).
    :param overrides: more ``key=value`` edits, as ``dvc exp run -S`` (e.g. ``train.lr=5e-4``).
    :param restore_params: put params.yaml back as it was once the run ends.
    :param parallel: run independent stages at the same time (else one after another).
    :param repo: the DVC repository to run in (default: the one holding this file).
    :returns: the stages, in a topological order.
    :raises RuntimeError: naming the stages that failed or could not run.
    """
    root = Path(repo) if repo else REPO
    with pipeline_lock(root), params_restored(root, restore=restore_params):
        cfg = apply_overrides(root, [f"profile={profile}", f"dataset={dataset}", *(overrides or [])])
        graph = stage_graph(root)
        print("stages: " + ", ".join(f"{s} <- {' + '.join(up) or '(none)'}" for s, up in graph.items()))
        train_log = str(root / cfg.paths.train / "train_log.csv")
        with parent_run(cfg, root) as tracker:
            futures: dict = {}
            for i, (stage, upstream) in enumerate(graph.items()):
                before = upstream if parallel else list(graph)[:i][-1:]
                progress = {"train_log": train_log, "total_steps": cfg.train.n_iters} if stage == TRAIN_STAGE else {}
                futures[stage] = dvc_stage.with_options(name=stage, task_run_name=stage).submit(
                    str(root), stage, **progress, wait_for=[futures[s] for s in before])
            wait(list(futures.values()))
            failed = [s for s, f in futures.items() if not f.state.is_completed()]
            metrics = root / cfg.paths.evaluate / "metrics.json"
            if "evaluate" not in failed and metrics.is_file():
                publish_metrics(metrics)
                log_headline(tracker, absolute_paths(cfg, root))  # FID, IS, KID and the model version
            publish_summary(getattr(tracker, "run_id", None), root / cfg.paths.report / "report.html", failed)
    if failed:
        raise RuntimeError(f"stages not completed: {', '.join(failed)} (see their task runs)")
    return list(graph)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--restore-params", action="store_true")
    parser.add_argument("--sequential", action="store_true", help="one stage at a time, in a topological order")
    parser.add_argument("--repo", default=None, help="the DVC repository to run in (default: this one)")
    args = parser.parse_args(argv)
    state = ncsn_pipeline(args.dataset, args.profile, args.overrides, args.restore_params,
                          parallel=not args.sequential, repo=args.repo, return_state=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
