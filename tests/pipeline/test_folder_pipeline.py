"""A folder of your own RGB images through the whole smoke pipeline, offline: the classifier stage
trains the self-supervised encoder, evaluate measures ``ssl_fid`` with it, the model is registered
and the report shows 3-channel samples. Then the same run with Inception forced and no weights:
no FID, one line saying why, and the pipeline still finishes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ncsn.data.shapes import write_shapes
from tests.helpers import copy_repository, repo_env

TIMEOUT_S = 1200


def _pipeline(repo: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    overrides = ["profile=smoke", "dataset=folder", f"data.folder={folder}", "data.image_size=32",
                 "data.channels=3", *extra]
    command = [sys.executable, "-m", "ncsn", "pipeline", *[arg for o in overrides for arg in ("-S", o)]]
    result = subprocess.run(command, cwd=repo, env=repo_env(repo), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"ncsn pipeline failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _client(repo: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'outputs' / 'mlflow' / 'mlflow.db'}")


def _parent_runs(client) -> list:
    experiment = client.get_experiment_by_name("ncsn")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the repository copy that ran the folder pipeline, the image folder)."""
    root = tmp_path_factory.mktemp("folder_run")
    folder = root / "images"
    write_shapes(folder, 200, size=32, seed=0)
    repo = root / "ncsn"
    repo.mkdir()
    copy_repository(repo)
    _pipeline(repo, folder)
    return repo, folder


def test_own_rgb_images_finish_the_pipeline_with_a_named_extractor(folder_run: tuple[Path, Path]) -> None:
    repo, _ = folder_run
    out = repo / "outputs"
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["extractor"] == "ncsn-ssl-encoder" and "same data only" in metrics["note"]
    assert math.isfinite(metrics["ssl_fid"]) and metrics["ssl_fid"] > metrics["floor_ssl_fid_train_vs_test"]
    assert not any(k.startswith(("classifier_", "class_share")) or k in ("fid", "is") for k in metrics)

    grid = Image.open(out / "sample" / "grid.png")
    assert grid.mode == "RGB"
    red, green, _ = grid.split()
    assert red.tobytes() != green.tobytes()  # colour samples, not grey ones repeated
    report = (out / "report" / "report.html").read_text()
    assert "ncsn-ssl-encoder" in report and "same data only" in report and "dataset <b>folder</b>" in report

    client = _client(repo)
    version = client.get_model_version_by_alias("ncsn-folder", "champion")
    assert version.tags["fid_metric"] == "ssl_fid" and version.tags["extractor"] == "ncsn-ssl-encoder"
    (parent,) = _parent_runs(client)
    assert parent.data.metrics["ssl_fid"] == pytest.approx(metrics["ssl_fid"])
    assert parent.data.tags["ncsn.model_version"] == str(version.version)


def test_no_extractor_at_all_leaves_fid_out_and_the_pipeline_goes_on(folder_run: tuple[Path, Path]) -> None:
    repo, folder = folder_run
    result = _pipeline(repo, folder, "evaluate.extractor=inception", f"evaluate.weights_path={repo / 'absent.pth'}")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "no FID/IS/KID" in line]
    assert len(lines) == 1 and "Inception weights missing" in lines[0], lines
    out = repo / "outputs"
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["extractor"] == "none" and not any("fid" in k or "kid" in k for k in metrics)
    assert metrics["best_checkpoint_by"] == "dsm_loss" and math.isfinite(metrics["nn_pixel_ratio"])

    client = _client(repo)
    versions = {str(v.version): v.tags["fid_metric"] for v in client.search_model_versions("name = 'ncsn-folder'")}
    assert versions == {"1": "ssl_fid", "2": "none"}
    assert str(client.get_model_version_by_alias("ncsn-folder", "champion").version) == "1"
    report = (out / "report" / "report.html").read_text()
    assert "Inception weights missing" in report
