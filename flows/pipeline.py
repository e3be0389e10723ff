"""The ncsn pipeline as a Prefect 3 flow: one task per DVC stage.

The stages and their order come from ``dvc.yaml`` (``ncsn.pipeline.stage_order``); each task
runs ``dvc repro --single-item STAGE``, so DVC still decides what is up to date. A task is
retried only when its failure looks transient (the stage was killed from outside, or the
repository was locked); a bad parameter is rejected before any task starts.

Run it without a server (Prefect's ephemeral mode) or against ``PREFECT_API_URL``::

    python -m flows.pipeline --profile smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from ncsn.pipeline import StageFailed, apply_overrides, params_restored, parent_run, repro_stage, stage_order

REPO = Path(__file__).resolve().parents[1]  # the DVC repository the flow runs in


def _retry_if_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a stage only if its failure may not happen again."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, StageFailed) and error.transient


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=_retry_if_transient,
      cache_policy=NO_CACHE, log_prints=True)
def dvc_stage(repo: str, stage: str) -> str:
    """``dvc repro --single-item STAGE`` (DVC skips it when nothing changed)."""
    repro_stage(Path(repo), stage)
    return stage


@flow(name="ncsn-pipeline", log_prints=True)
def ncsn_pipeline(dataset: str = "mnist5k", profile: str = "cpu", overrides: list[str] | None = None,
                  restore_params: bool = False) -> list[str]:
    """Train, sample, evaluate and inpaint with NCSN: every stage of dvc.yaml, in order.

    :param dataset: ``base.dataset`` in params.yaml.
    :param profile: ``profile`` in params.yaml (smoke | cpu | paper).
    :param overrides: more ``key=value`` edits, as ``dvc exp run -S`` (e.g. ``train.lr=5e-4``).
    :param restore_params: put params.yaml back as it was once the run ends.
    :returns: the stages run, in order.
    """
    repo = REPO
    with params_restored(repo, restore=restore_params):
        cfg = apply_overrides(repo, [f"profile={profile}", f"base.dataset={dataset}", *(overrides or [])])
        stages = stage_order(repo)
        print(f"stages: {' -> '.join(stages)}")
        with parent_run(cfg, repo):
            for stage in stages:
                dvc_stage.with_options(name=stage, task_run_name=stage)(str(repo), stage)
    return stages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--restore-params", action="store_true")
    args = parser.parse_args(argv)
    state = ncsn_pipeline(args.dataset, args.profile, args.overrides, args.restore_params, return_state=True)
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
