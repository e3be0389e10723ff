"""flows.pipeline in Prefect's ephemeral mode (no server configured) on a tiny DVC repository."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.dvc_repo import make_dvc_repo

prefect = pytest.importorskip("prefect")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.client.schemas.sorting import TaskRunSort  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

import flows.pipeline  # noqa: E402
from flows.pipeline import ncsn_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def ephemeral_prefect(tmp_path_factory):
    """No PREFECT_API_URL: Prefect starts its own temporary server, its database in a tmp home."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    home = tmp_path_factory.mktemp("prefect_home")
    settings = {PREFECT_HOME: home, PREFECT_SERVER_ANALYTICS_ENABLED: False,
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 120}  # default 20 s: too short on 2 busy cores
    with temporary_settings(updates=settings,
                            restore_defaults={PREFECT_API_URL}):
        try:
            yield home
        finally:
            # Send the buffered logs and events before the server goes (or they are retried at exit).
            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
            SubprocessASGIServer().stop()  # the one temporary server of this process


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """Point the flow at a tiny DVC repo; stand in for the MLflow parent run."""

    @contextlib.contextmanager
    def fake_parent_run(cfg, repo):
        os.environ["NCSN_MLFLOW_PARENT_RUN_ID"] = "parent-123"
        try:
            yield
        finally:
            del os.environ["NCSN_MLFLOW_PARENT_RUN_ID"]

    def make(stages: dict) -> Path:
        repo = make_dvc_repo(tmp_path / "repo", stages)
        monkeypatch.setattr(flows.pipeline, "REPO", repo)
        return repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setattr(flows.pipeline, "parent_run", fake_parent_run)
    return make


def _task_runs(flow_run_id: uuid.UUID, expected: int, timeout: float = 30.0) -> dict:
    """``{task run name: task run}`` once the server has recorded ``expected`` of them."""
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flow_runs, sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=50)
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= expected or time.monotonic() > deadline:
                return {r.name: r for r in runs}
            time.sleep(0.5)


def test_flow_runs_each_dvc_stage_as_a_task(ephemeral_prefect, fake_repo):
    repo = fake_repo({
        "second": {"cmd": "cat first.txt > second.txt", "deps": ["first.txt"], "outs": ["second.txt"]},
        "first": {"cmd": "echo $NCSN_MLFLOW_PARENT_RUN_ID > first.txt", "params": ["train.lr"],
                  "outs": ["first.txt"]},
    })
    state = ncsn_pipeline(profile="smoke", overrides=["train.lr=5e-4"], return_state=True)

    assert state.is_completed(), state.message
    assert state.result() == ["first", "second"]
    assert (repo / "second.txt").read_text() == "parent-123\n"  # the stages ran inside the parent run
    assert "lr: 0.0005" in (repo / "params.yaml").read_text()
    runs = _task_runs(state.state_details.flow_run_id, expected=2)
    assert sorted(runs) == ["first", "second"]
    assert all(r.state.is_completed() for r in runs.values())


# Prints "held" when another process holds the lock (flock on a second open file description).
PROBE = """import fcntl, os
try:
    fcntl.flock(os.open(".dvc/tmp/ncsn-pipeline.lock", os.O_RDWR | os.O_CREAT), fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held")
"""


def test_flow_holds_the_repository_pipeline_lock(ephemeral_prefect, fake_repo, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    repo = fake_repo({"probe": {"cmd": f"{sys.executable} {probe} > lock.txt", "outs": ["lock.txt"]}})
    state = ncsn_pipeline(profile="smoke", return_state=True)
    assert state.is_completed(), state.message
    assert (repo / "lock.txt").read_text() == "held\n"  # an ncsn pipeline started now would wait


def test_flow_retries_transient_failures_only(ephemeral_prefect, fake_repo, monkeypatch):
    repo = fake_repo({
        # Killed by SIGKILL on its first run (as by the OOM killer), fine on the next.
        "flaky": {"cmd": "test -f killed_once || { touch killed_once; kill -9 $$; }; echo ok > flaky.txt",
                  "outs": ["flaky.txt"]},
        # A user error: must run once.
        "bad": {"cmd": "echo run >> bad_runs.log; exit 2", "deps": ["flaky.txt"]},
    })
    monkeypatch.setattr(flows.pipeline, "dvc_stage", flows.pipeline.dvc_stage.with_options(retry_delay_seconds=0))

    state = ncsn_pipeline(profile="smoke", return_state=True)

    assert state.is_failed()
    assert (repo / "flaky.txt").read_text() == "ok\n"
    assert (repo / "bad_runs.log").read_text().count("run") == 1
    runs = _task_runs(state.state_details.flow_run_id, expected=2)
    assert runs["flaky"].state.is_completed() and runs["flaky"].run_count == 2
    assert runs["bad"].state.is_failed() and runs["bad"].run_count == 1


def test_flow_rejects_a_bad_parameter_before_any_stage(ephemeral_prefect, fake_repo):
    repo = fake_repo({"never": {"cmd": "touch ran.txt"}})
    original = (repo / "params.yaml").read_bytes()

    assert flows.pipeline.main(["--profile", "bogus"]) == 1

    assert not (repo / "ran.txt").exists()
    assert (repo / "params.yaml").read_bytes() == original


def _timed(stage: str, body: str) -> str:
    """A stage command that writes its start and end times (``times/STAGE``) around ``body``."""
    return f"mkdir -p times && date +%s.%N > times/{stage}.start && {body} && date +%s.%N > times/{stage}.end"


def _window(repo: Path, stage: str) -> tuple[float, float]:
    return tuple(float((repo / "times" / f"{stage}.{edge}").read_text()) for edge in ("start", "end"))


_DAG = {  # train and other are independent; evaluate needs both; report needs evaluate
    "train": {"cmd": _timed("train", "mkdir -p outputs/train && echo step,loss,images_per_s > outputs/train/train_log.csv"
                                     " && for s in 10 20 30 40; do sleep 1;"
                                     " echo $s,0.5,100 >> outputs/train/train_log.csv; done"),
              "outs": [{"outputs/train/train_log.csv": {"cache": False}}]},
    "other": {"cmd": _timed("other", "sleep 4 && echo other > other.txt"), "outs": ["other.txt"]},
    "evaluate": {"cmd": _timed("evaluate", "mkdir -p outputs/evaluate"
                                           " && echo '{\"fid\": 12.3456, \"extractor\": \"x\"}'"
                                           " > outputs/evaluate/metrics.json"),
                 "deps": ["outputs/train/train_log.csv", "other.txt"],
                 "metrics": [{"outputs/evaluate/metrics.json": {"cache": False}}]},
    "report": {"cmd": "mkdir -p outputs/report && echo '<html>' > outputs/report/report.html",
               "deps": ["outputs/evaluate/metrics.json"], "outs": [{"outputs/report/report.html": {"cache": False}}]},
}


def _dvc_status(repo: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _artifacts(flow_run_id: uuid.UUID) -> dict:
    """``{key: artifact}`` of the artifacts of a flow run and of its task runs."""
    from prefect.client.schemas.objects import Artifact

    query = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 50, "offset": 0, "sort": "KEY_ASC"}
    with get_client(sync_client=True) as client:  # (its read_artifacts sends None for each filter not given)
        found = Artifact.model_validate_list(client.request("POST", "/artifacts/filter", json=query).json())
    return {a.key: a for a in found}


def test_flow_runs_independent_stages_at_once_and_publishes_artifacts(ephemeral_prefect, fake_repo):
    repo = fake_repo(_DAG)
    state = ncsn_pipeline(profile="smoke", return_state=True)

    assert state.is_completed(), state.message
    (train_start, train_end), (other_start, other_end) = _window(repo, "train"), _window(repo, "other")
    assert max(train_start, other_start) < min(train_end, other_end), "train and other did not overlap"
    assert _window(repo, "evaluate")[0] >= max(train_end, other_end)  # a stage waits for all its upstream
    # DVC's lock did not fail a stage, and every stage is recorded in dvc.lock.
    assert "up to date" in _dvc_status(repo)
    assert set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"]) == set(_DAG)

    flow_run_id = state.state_details.flow_run_id
    runs = _task_runs(flow_run_id, expected=len(_DAG))
    artifacts = _artifacts(flow_run_id)
    progress = artifacts["ncsn-training"]
    assert progress.type == "progress" and float(progress.data) == 100.0  # 40 of smoke's 40 steps
    assert progress.task_run_id == runs["train"].id
    assert artifacts["ncsn-metrics"].type == "table"
    assert json.loads(artifacts["ncsn-metrics"].data) == [{"metric": "fid", "value": "12.35"},
                                                          {"metric": "extractor", "value": "x"}]
    summary = artifacts["ncsn-summary"].data
    assert "Every stage completed" in summary and "tracking is off" in summary
    assert str(repo / "outputs" / "report" / "report.html") in summary


def test_the_sequential_flow_runs_one_stage_at_a_time(ephemeral_prefect, fake_repo):
    repo = fake_repo({name: _DAG[name] for name in ("other", "train")})
    state = ncsn_pipeline(profile="smoke", parallel=False, return_state=True)

    assert state.is_completed(), state.message
    (train_start, _), (_, other_end) = _window(repo, "train"), _window(repo, "other")
    assert train_start >= other_end  # dvc.yaml order: other, then train
    assert "up to date" in _dvc_status(repo)


def test_last_step_reads_the_last_complete_row(tmp_path):
    from flows.artifacts import last_step

    log = tmp_path / "train_log.csv"
    assert last_step(log) == 0  # not written yet
    log.write_text("step,loss,images_per_s\n")
    assert last_step(log) == 0
    log.write_text("step,loss,images_per_s\n10,0.5,100\n20,0.4,1")  # the last row is being written
    assert last_step(log) == 10
