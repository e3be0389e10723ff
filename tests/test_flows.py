"""flows.pipeline in Prefect's ephemeral mode (no server configured) on a tiny DVC repository."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.dvc_repo import make_dvc_repo

prefect = pytest.importorskip("prefect")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.client.schemas.sorting import TaskRunSort  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_ANALYTICS_ENABLED,
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
    with temporary_settings(updates={PREFECT_HOME: home, PREFECT_SERVER_ANALYTICS_ENABLED: False},
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
