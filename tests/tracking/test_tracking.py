"""MLflow tracking: stage runs with the whole config, nesting, secrets, the sigma schedule.

Every test gets its own embedded store (a copy of one freshly initialised SQLite database,
so MLflow's schema migrations run once per module) and no MLflow server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from ncsn.config import Config, config_from_dict
from ncsn.core.sigmas import geometric_sigmas
from ncsn.figures.sigma_schedule import write_sigma_schedule
from ncsn.tracking.sigma_logging import SIGMAS_PARAM_LENGTH, log_sigma_schedule
from ncsn.tracking.parent_run import pipeline_run
from ncsn.tracking.runs import PARENT_ENV, stage_run
from ncsn.tracking.store import tracking_uri
from ncsn.tracking.trackers import NullTracker

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.fixture
def cfg(tmp_path, mlflow_dir) -> Config:
    """Tracking on, into ``tmp_path/mlflow``; MLflow's process-wide URI and env restored afterwards."""
    return config_from_dict({"profile": "smoke", "tracking": {"enabled": True, "experiment": "test"},
                             "paths": {"mlflow": str(tmp_path / "mlflow"), "train": str(tmp_path / "train")}})


def _artifact_files(run_id: str, path: str = "") -> set[str]:
    client = MlflowClient()
    out = set()
    for info in client.list_artifacts(run_id, path or None):
        out |= _artifact_files(run_id, info.path) if info.is_dir else {info.path}
    return out


def test_stage_run_logs_params_and_the_config_into_the_embedded_store(cfg, tmp_path):
    with stage_run(cfg, "train") as tracker:
        tracker.log_metrics({"loss": 0.5}, step=3)
        tracker.set_tags({"note": "hello"})
        run_id = tracker.run_id
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ncsn.stage"] == "train" and "mlflow.parentRunId" not in run.data.tags
    assert run.data.tags["note"] == "hello"
    assert run.data.metrics["loss"] == 0.5
    flat = cfg.flat()
    assert set(run.data.params) == set(flat)
    assert run.data.params["train.lr"] == str(cfg.train.lr) and run.data.params["profile"] == "smoke"
    # Artifacts live in the local folder, beside the database.
    assert run.info.artifact_uri.startswith((tmp_path / "mlflow" / "artifacts").as_uri())
    config = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                                     dst_path=str(tmp_path / "dl"))).read_text())
    assert config == cfg.to_dict()
    # Telemetry is off in this process (and inherited by child processes).
    from mlflow.telemetry.client import get_telemetry_client

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"].lower() == "true" and get_telemetry_client() is None


def test_a_stage_that_raises_ends_its_run_failed(cfg):
    with pytest.raises(ValueError, match="boom"):
        with stage_run(cfg, "sample") as tracker:
            run_id = tracker.run_id
            raise ValueError("boom")
    assert MlflowClient().get_run(run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_stage_runs_nest_under_the_pipeline_parent_run(cfg, monkeypatch):
    with pipeline_run(cfg) as parent:
        assert os.environ[PARENT_ENV] == parent.run_id
        assert os.environ["MLFLOW_TRACKING_URI"] == tracking_uri(cfg)  # the children's store
    assert PARENT_ENV not in os.environ and "MLFLOW_TRACKING_URI" not in os.environ  # restored
    assert MlflowClient().get_run(parent.run_id).info.status == "FINISHED"

    # A stage in a child process: only the environment variable links it to the parent.
    monkeypatch.setenv(PARENT_ENV, parent.run_id)
    with stage_run(cfg, "prepare") as child:
        pass
    tags = MlflowClient().get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id and tags["ncsn.stage"] == "prepare"

    monkeypatch.setenv(PARENT_ENV, "0" * 32)  # a stale id: a top-level run, not a crash
    with stage_run(cfg, "prepare") as orphan:
        pass
    assert "mlflow.parentRunId" not in MlflowClient().get_run(orphan.run_id).data.tags


def test_secrets_are_never_logged(cfg, monkeypatch, tmp_path):
    import dataclasses

    secret, password = "abc123secret", "hunter2hunter2"
    monkeypatch.setenv("MY_API_TOKEN", secret)
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, root=f"/data/{secret}/raw"),
        evaluate=dataclasses.replace(cfg.evaluate, weights_path=f"https://me:{password}@example.org/w.pth"))
    with stage_run(cfg, "prepare") as tracker:
        tracker.log_params({"note": f"token is {secret}", "db_password": "plain", "long": "x" * 10_000})
        tracker.set_tags({"remark": f"see {secret}"})
        run_id = tracker.run_id
    run = MlflowClient().get_run(run_id)
    logged = [*run.data.params.values(), *run.data.tags.values()]
    config = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.yaml",
                                                      dst_path=str(tmp_path / "dl"))).read_text()
    for text in (*logged, config):
        assert secret not in text and password not in text
    assert run.data.params["data.root"] == "[redacted]"
    assert run.data.params["evaluate.weights_path"] == "https://[redacted]@example.org/w.pth"
    assert run.data.params["db_password"] == "[redacted]"  # the key looks secret
    assert run.data.params["data.n_test"] == str(cfg.data.n_test)  # the rest is logged as is
    assert len(run.data.params["long"]) <= 6000 and run.data.params["long"].endswith("[truncated]")


def test_disabled_tracking_yields_a_null_tracker_and_creates_nothing(tmp_path):
    cfg = config_from_dict({"profile": "smoke", "tracking": {"enabled": False},
                            "paths": {"mlflow": str(tmp_path / "mlflow")}})
    with stage_run(cfg, "train") as tracker, pipeline_run(cfg) as parent:
        assert isinstance(tracker, NullTracker) and tracker.run_id is None and parent.run_id is None
        tracker.log_params({"a": 1})
        tracker.log_metrics({"b": 2.0}, step=1)
        tracker.log_artifact(tmp_path / "missing.txt")
        tracker.set_tags({"c": "d"})
    assert not (tmp_path / "mlflow").exists() and PARENT_ENV not in os.environ


def test_the_sigma_schedule_is_logged_as_param_csv_and_plot(cfg, tmp_path):
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    with stage_run(cfg, "train") as tracker:
        write_sigma_schedule(tmp_path / "train", sigmas.tolist())
        log_sigma_schedule(tracker, sigmas, tmp_path / "train")
        run_id = tracker.run_id
    params = MlflowClient().get_run(run_id).data.params
    values = [float(v) for v in params["sigmas"].split(",")]
    assert values == pytest.approx(sigmas.tolist(), rel=1e-5)
    assert params["sigmas.num_levels"] == "10"
    assert _artifact_files(run_id, "sigma_schedule") == {"sigma_schedule/sigmas.csv", "sigma_schedule/sigmas.png"}
    rows = (tmp_path / "train" / "sigmas.csv").read_text().split()
    assert rows[0] == "level,sigma" and len(rows) == 11 and float(rows[-1].split(",")[1]) == pytest.approx(0.01)
    assert (tmp_path / "train" / "sigmas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Recorder(NullTracker):
    def __init__(self) -> None:
        self.params: dict = {}
        self.artifacts: list = []

    def log_params(self, params):
        self.params |= params

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append((Path(path).name, artifact_path))


def test_a_long_sigma_schedule_is_shortened_in_the_param_and_says_so(tmp_path):
    sigmas = geometric_sigmas(50.0, 0.01, 1000)
    tracker = _Recorder()
    write_sigma_schedule(tmp_path, sigmas.tolist())
    log_sigma_schedule(tracker, sigmas, tmp_path)
    text = tracker.params["sigmas"]
    assert len(text) <= SIGMAS_PARAM_LENGTH + 100 and "[truncated: 16 of 1000 levels shown" in text
    assert text.startswith("50, ") and ", 0.01 [truncated" in text
    assert tracker.params["sigmas.num_levels"] == 1000
    assert len((tmp_path / "sigmas.csv").read_text().split()) == 1001  # the CSV has them all
    assert float((tmp_path / "sigmas.csv").read_text().split()[-1].split(",")[1]) == pytest.approx(0.01)
    assert sorted(tracker.artifacts) == [("sigmas.csv", "sigma_schedule"), ("sigmas.png", "sigma_schedule")]
    assert torch.equal(sigmas, geometric_sigmas(50.0, 0.01, 1000))  # input untouched


def test_every_run_carries_its_provenance_and_the_params_file(cfg, tmp_path, monkeypatch):
    """dataset, profile, git commit and dirty flag on stage and parent runs; params.yaml and dvc.lock
    as artifacts; outside a DVC repository there is no stage hash."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("profile: smoke  # as composed\ntrain: {lr: 0.001}\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages:\n  s:\n    cmd: echo 1\n    params:\n      params.yaml:\n"
                                   "        train.lr: 2e-05\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    with pipeline_run(cfg, repo) as parent:
        with stage_run(cfg, "train") as child:
            pass
    client = MlflowClient()
    for run_id in (parent.run_id, child.run_id):
        tags = client.get_run(run_id).data.tags
        assert tags["dataset"] == cfg.base.dataset and tags["profile"] == "smoke"
        assert tags["git_commit"] == head and tags["git_dirty"] == "false" and tags["dvc_exp_name"] == "exp-a"
        assert "dvc_stage_hash" not in tags  # no dvc.yaml: no stage to hash
        saved = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="params.yaml",
                                                    dst_path=str(tmp_path / run_id))
        assert Path(saved).read_bytes() == (repo / "params.yaml").read_bytes()  # the file itself, comments too
    from ncsn.tracking.provenance import lock_hash

    parent_run = client.get_run(parent.run_id)
    assert parent_run.data.tags["dvc_lock_hash"] == lock_hash(repo)
    assert "dvc.lock" in _artifact_files(parent.run_id)
    (repo / "params.yaml").write_text("profile: smoke\n")
    with stage_run(cfg, "train") as dirty:
        pass
    assert client.get_run(dirty.run_id).data.tags["git_dirty"] == "true"


def test_the_experiment_opens_on_its_runs_and_the_parent_run_holds_the_headline(cfg, tmp_path):
    """Issue 27 without a pipeline: the experiment kind tag, and the evaluate stage's headline on the parent run."""
    import dataclasses
    import json

    from ncsn.tracking.headline import log_headline

    cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, evaluate=str(tmp_path / "evaluate")))
    (tmp_path / "evaluate").mkdir()
    metrics = {"extractor": "ncsn-digit-classifier", "classifier_fid": 3.5, "classifier_is": 7.25,
               "classifier_kid_mean": 0.125, "bits_per_dim": 1.75, "reference_classifier_is_test": 8.0}
    (tmp_path / "evaluate" / "metrics.json").write_text(json.dumps(metrics))
    with pipeline_run(cfg) as parent:
        with stage_run(cfg, "evaluate") as evaluate:  # nested in-process, as a DVC child is through the env
            evaluate.set_tags({"ncsn.tracking.registered_model": "ncsn-mnist5k", "ncsn.model_version": "3"})
        log_headline(parent, cfg)
    client = MlflowClient()
    assert client.get_experiment_by_name("test").tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(parent.run_id).data
    headline = ("classifier_fid", "classifier_is", "classifier_kid_mean", "bits_per_dim")
    assert {k: v for k, v in run.metrics.items() if k != "pipeline_seconds"} == {k: metrics[k] for k in headline}
    assert run.metrics["pipeline_seconds"] > 0
    assert run.tags["extractor"] == "ncsn-digit-classifier" and run.tags["ncsn.model_version"] == "3"
    assert run.tags["mlflow.note.content"] == "Registered model: [ncsn-mnist5k v3](#/models/ncsn-mnist5k/versions/3)"
