"""The pipeline against a real ``mlflow server`` (SQLite backend, proxied artifacts) on 127.0.0.1.

The session's smoke pipeline (``tests.smoke_fixtures.server_smoke_run``) tracks into the server
through ``MLFLOW_TRACKING_URI``: its runs, artifacts, registered model and ``champion`` alias live
there, the embedded store under ``outputs/mlflow`` is never created, and ``ncsn sample --model
models:/ncsn-mnist5k@champion`` downloads the champion through the server. Last, several processes
register versions with random FIDs at the same moment: the champion must end on the best FID.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from ncsn.storage.checkpoint import FORMAT, atomic_save  # noqa: E402
from ncsn.models import build_model
from ncsn.storage.score_model import network_args  # noqa: E402
from ncsn.core.sigmas import geometric_sigmas  # noqa: E402
from tests.helpers import REPO  # noqa: E402
from tests.registry_worker import worker_config  # noqa: E402

pytestmark = pytest.mark.slow
NAME = "ncsn-mnist5k"
STAGES = {"prepare", "classifier", "train", "sample", "evaluate", "inpaint", "figures", "report"}
N_WORKERS = 5
FIDS_EACH = 2
RACE_TIMEOUT_S = 300


def _pipeline_runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("ncsn")
    assert experiment is not None, "no experiment 'ncsn' on the server"
    return experiment, client.search_runs([experiment.experiment_id], max_results=1000)


def test_runs_and_artifacts_live_on_the_server(server_smoke_run) -> None:
    run = server_smoke_run
    assert not (run.repo / "outputs/mlflow/mlflow.db").exists(), "the embedded SQLite store was used"
    client = MlflowClient(tracking_uri=run.uri)
    experiment, runs = _pipeline_runs(client)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    by_stage = {r.data.tags.get("ncsn.stage"): r for r in runs}
    assert STAGES | {"pipeline"} <= set(by_stage), sorted(by_stage)
    parent = by_stage["pipeline"].info.run_id
    for stage in STAGES:
        assert by_stage[stage].info.status == "FINISHED", stage
        assert by_stage[stage].data.tags.get("mlflow.parentRunId") == parent, f"{stage} is not nested"
    listed = {f.path for f in client.list_artifacts(by_stage["report"].info.run_id, "report")}
    assert "report/report.html" in listed
    model_files = {Path(f.path).name for f in client.list_artifacts(by_stage["evaluate"].info.run_id,
                                                                     "registered_model")}
    assert {"MLmodel", "model.pt", "config.yaml"} <= model_files
    stored = list((run.server_root / "artifacts").rglob("report.html"))
    assert stored, "the server's artifact folder holds no report.html"


def test_the_champion_is_registered_on_the_server(server_smoke_run) -> None:
    client = MlflowClient(tracking_uri=server_smoke_run.uri)
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.status == "READY"
    assert champion.source.startswith("mlflow-artifacts:"), champion.source
    _, runs = _pipeline_runs(client)
    assert champion.run_id in {r.info.run_id for r in runs if r.data.tags.get("ncsn.stage") == "evaluate"}
    assert champion.tags["fid_metric"] == "classifier_fid" and champion.tags["profile"] == "smoke"


def test_the_ui_opens_on_the_runs_and_the_parent_run_holds_the_headline(server_smoke_run) -> None:
    """Issue 27: the experiment opens on its runs list, not the GenAI overview, and the runs list
    compares pipelines by their parent runs: FID/IS/KID with the extractor, wall time, model version."""
    client = MlflowClient(tracking_uri=server_smoke_run.uri)
    experiment, runs = _pipeline_runs(client)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    by_stage = {r.data.tags.get("ncsn.stage"): r for r in runs}
    parent, evaluate = by_stage["pipeline"].data, by_stage["evaluate"].data
    for key in ("classifier_fid", "classifier_is", "classifier_kid_mean"):
        assert parent.metrics[key] == evaluate.metrics[key], key
    assert ("bits_per_dim" in parent.metrics) == ("bits_per_dim" in evaluate.metrics)
    assert parent.tags["extractor"] == evaluate.tags["extractor"]
    assert 0 < parent.metrics["pipeline_seconds"] <= server_smoke_run.seconds
    name, version = parent.tags["ncsn.tracking.registered_model"], parent.tags["ncsn.model_version"]
    assert (name, version) == (NAME, evaluate.tags["ncsn.model_version"])
    assert client.get_model_version(name, version).run_id == by_stage["evaluate"].info.run_id
    assert f"#/models/{name}/versions/{version}" in parent.tags["mlflow.note.content"]


def test_sample_from_the_champion_through_the_server(server_smoke_run, tmp_path: Path) -> None:
    run = server_smoke_run
    out = tmp_path / "champion_samples"
    result = subprocess.run([sys.executable, "-m", "ncsn", "sample", "--model", f"models:/{NAME}@champion",
                             "--out", str(out)], cwd=run.repo, env=run.env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((out / "shards").glob("*.pt")), "no shard drawn"
    version = MlflowClient(tracking_uri=run.uri).get_model_version_by_alias(NAME, "champion").version
    assert (run.repo / f"outputs/mlflow/downloads/{NAME}/v{version}/model.pt").is_file()
    assert not (run.repo / "outputs/mlflow/mlflow.db").exists(), "the embedded SQLite store was used"


def _checkpoint(path: Path) -> Path:
    """A small real checkpoint (smoke U-Net, 1x8x8 mnist5k) that the workers register."""
    cfg = worker_config(path.parent)
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    torch.manual_seed(0)
    net = build_model(**network_args(cfg.model), channels=1, image_size=8, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 0, "config": cfg.to_dict(), "sigmas": sigmas,
                 "data": {"dataset": "mnist5k", "channels": 1, "image_size": 8},
                 "model": net.state_dict(), "ema": None}, path)
    return path


def test_concurrent_promotions_leave_the_best_fid_champion(server_smoke_run, tmp_path: Path) -> None:
    """N_WORKERS processes register FIDS_EACH versions each, all starting at once; the champion is the best."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    checkpoint = _checkpoint(tmp_path / "model.pt")
    go = tmp_path / "go"
    env = {k: v for k, v in server_smoke_run.env().items() if k != "NCSN_MLFLOW_PARENT_RUN_ID"}
    env["PYTHONPATH"] = str(REPO)
    fids = [[round(rng.uniform(1.0, 500.0), 3) for _ in range(FIDS_EACH)] for _ in range(N_WORKERS)]
    workers = [subprocess.Popen([sys.executable, "-m", "tests.promotion_worker", str(go), str(checkpoint),
                                 *map(str, these)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for these in fids]
    try:
        deadline = time.monotonic() + RACE_TIMEOUT_S
        for worker in workers:  # every worker imported and connected: then all start together
            line = worker.stdout.readline().strip()
            assert line == "ready", f"worker failed to start: {line!r} {worker.stderr.read()[-2000:]}"
        go.touch()
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert worker.returncode == 0, f"worker failed:\n{err[-3000:]}"
            outputs.append(out)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    client = MlflowClient(tracking_uri=server_smoke_run.uri)
    versions = client.search_model_versions(f"name = '{NAME}'")
    registered = {float(v.tags["classifier_fid"]): v.version for v in versions}
    assert {f for these in fids for f in these} <= set(registered), outputs
    best = min(registered)
    champion = client.get_model_version_by_alias(NAME, "champion")
    print(f"race (seed {seed}): {N_WORKERS} processes x {FIDS_EACH} versions; champion v{champion.version} "
          f"with FID {champion.tags['classifier_fid']}, best v{registered[best]} with FID {best}")
    assert champion.version == registered[best], (
        f"seed {seed}: champion v{champion.version} (FID {champion.tags['classifier_fid']}) is not the best, "
        f"v{registered[best]} (FID {best}); workers said:\n{''.join(outputs)}")
