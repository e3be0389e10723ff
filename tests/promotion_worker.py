"""A process that registers one checkpoint under given FIDs, racing others (tests/tracking/test_mlflow_server.py).

``python -m tests.promotion_worker GO_FILE CHECKPOINT FID [FID ...]`` connects to
``$MLFLOW_TRACKING_URI`` (a real server), prints ``ready``, waits until ``GO_FILE`` exists (so
that all workers start registering at the same moment), then registers ``CHECKPOINT`` once per
FID exactly as the evaluate stage does (a stage run, then ``register_and_promote``) and prints
``registered VERSION FID PROMOTED`` after each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

GO_TIMEOUT_S = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("go_file")
    parser.add_argument("checkpoint")
    parser.add_argument("fids", nargs="+", type=float)
    args = parser.parse_args(argv)
    assert os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"), "set MLFLOW_TRACKING_URI to the server"

    from ncsn.tracking.registry import register_and_promote
    from ncsn.tracking.runs import stage_run
    from ncsn.tracking.store import connect
    from tests.registry_worker import worker_config

    cfg = worker_config(tempfile.mkdtemp())  # paths.mlflow is unused: the server is the store
    connect(cfg)
    print("ready", flush=True)
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not Path(args.go_file).exists():
        if time.monotonic() > deadline:
            print("no go signal", flush=True)
            return 1
        time.sleep(0.05)
    for fid in args.fids:
        metrics = {"classifier_fid": fid, "n_samples": 32, "extractor": "ncsn-digit-classifier"}
        with stage_run(cfg, "evaluate") as tracker:
            result = register_and_promote(cfg, tracker, Path(args.checkpoint), metrics)
        print("registered", result["version"], fid, result["promoted"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
