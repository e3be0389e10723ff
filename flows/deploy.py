"""Deployments of the ``ncsn-pipeline`` flow: served with a cron schedule, or on a work pool.

Prefect's scheduler and workers need a real server, not the ephemeral one::

    prefect server start --host 127.0.0.1                     # terminal 1
    export PREFECT_API_URL=http://127.0.0.1:4200/api          # terminals 2 and 3, in the repository root

    # either: one process registers the cron deployment and runs what is due
    python -m flows.deploy --cron "0 3 * * 0" --profile cpu

    # or: a deployment on a work pool, whose flow runs a worker picks up
    python -m flows.deploy --work-pool ncsn --profile cpu     # creates the pool if missing
    prefect worker start --pool ncsn                          # terminal 3
    prefect deployment run ncsn-pipeline/ncsn-on-ncsn

The serve process and the default ``process`` pool run one flow run at a time (the pool's
concurrency limit is 1): DVC runs one pipeline per workspace. The flow itself runs the
independent stages of that one pipeline at the same time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence
from uuid import UUID

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.pipeline import REPO, ncsn_pipeline

DEPLOYMENT = "scheduled-retrain"
CRON = "0 3 * * 0"  # Sundays at 03:00
ENTRYPOINT = "flows/pipeline.py:ncsn_pipeline"  # relative to the repository root


def build_deployment(cron: str = CRON, timezone: str = "UTC",
                     parameters: dict[str, Any] | None = None) -> RunnerDeployment:
    """The ``ncsn-pipeline/scheduled-retrain`` deployment: ``ncsn_pipeline`` on ``cron``.

    :param parameters: defaults for the flow's parameters (dataset, profile, overrides, ...).
    """
    from prefect.client.schemas.schedules import CronSchedule

    return ncsn_pipeline.to_deployment(
        name=DEPLOYMENT,
        schedule=CronSchedule(cron=cron, timezone=timezone),
        parameters=parameters or {},
        description="Retrain NCSN on a schedule: every stage of dvc.yaml, skipped by DVC when up to date.",
        tags=["ncsn", "retrain"],
    )


def ensure_work_pool(name: str, pool_type: str = "process", concurrency_limit: int | None = 1) -> None:
    """Create the work pool ``name`` of ``pool_type`` unless it exists (then it is left as it is)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type, concurrency_limit=concurrency_limit))
        except ObjectAlreadyExists:
            pass


def deploy_to_work_pool(work_pool: str, parameters: dict[str, Any] | None = None, cron: str | None = None,
                        job_variables: dict[str, Any] | None = None, source: Path = REPO) -> UUID:
    """Register ``ncsn-pipeline/ncsn-on-<work_pool>``, run by the workers of ``work_pool``.

    The flow's code is the repository ``source`` where it lies (the worker's flow run starts in
    it, and the flow runs the pipeline there): right for a ``process`` pool on this machine. A
    Docker or Kubernetes pool runs an image holding the repository instead (docs/orchestration.md).

    :param parameters: defaults for the flow's parameters (dataset, profile, overrides, repo, ...).
    :param cron: a schedule, if any (the server's scheduler creates the runs).
    :param job_variables: overrides of the pool's job template (e.g. ``{"env": {...}}``).
    :param source: the repository holding the flow's code (default: this one).
    :returns: the deployment's id.
    """
    flow = ncsn_pipeline.from_source(source=str(source), entrypoint=ENTRYPOINT)
    # (Flow.deploy of Prefect 3.8.8 fails on its own check for online workers: HTTP 422.)
    deployment = flow.to_deployment(name=f"ncsn-on-{work_pool}", work_pool_name=work_pool,
                                    parameters=parameters or {}, cron=cron, job_variables=job_variables or {},
                                    description="NCSN: every stage of dvc.yaml, independent stages at once.",
                                    tags=["ncsn"])
    return deployment.apply()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--cron", default=None, help=f"when to retrain (served: default {CRON!r}; pool: none)")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--work-pool", default=None, help="deploy to this work pool instead of serving")
    parser.add_argument("--pool-type", default="process", help="the type of a work pool created here")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    parameters = {"dataset": args.dataset, "profile": args.profile, "overrides": args.overrides}
    if args.work_pool:
        ensure_work_pool(args.work_pool, args.pool_type)
        print(f"deployment {deploy_to_work_pool(args.work_pool, parameters, args.cron)} on pool {args.work_pool}")
        return 0
    serve(build_deployment(args.cron or CRON, args.timezone, parameters), limit=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
