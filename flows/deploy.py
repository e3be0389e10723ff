"""Scheduled retraining: serve the ``ncsn-pipeline`` flow as a deployment with a cron schedule.

Prefect's scheduler runs only in a real server, not in the ephemeral one::

    prefect server start --host 127.0.0.1                     # terminal 1
    export PREFECT_API_URL=http://127.0.0.1:4200/api          # terminal 2, in the repository root
    python -m flows.deploy --cron "0 3 * * 0" --profile cpu   # register it and run what is due

The serve process registers (or updates) the deployment, polls the server and runs each due
flow run in a subprocess, one at a time (DVC runs one pipeline per workspace).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from flows.pipeline import ncsn_pipeline

DEPLOYMENT = "scheduled-retrain"
CRON = "0 3 * * 0"  # Sundays at 03:00


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--cron", default=CRON, help=f"when to retrain (default: {CRON!r})")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    parameters = {"dataset": args.dataset, "profile": args.profile, "overrides": args.overrides}
    serve(build_deployment(args.cron, args.timezone, parameters), limit=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
