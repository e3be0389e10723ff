"""Deployments against a real `prefect server start` on loopback.

* The server's scheduler service turns the cron deployment's schedule into scheduled flow runs
  (the ephemeral server has no scheduler); nothing is run.
* A `prefect worker start` process serves a work pool and runs the deployed flow on the smoke
  pipeline in a copy of the repository: stages in parallel, artifacts, `dvc status` clean, and
  results bit-identical to the golden record of `dvc repro`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prefect")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId  # noqa: E402
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort  # noqa: E402
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings  # noqa: E402

from flows.deploy import build_deployment, deploy_to_work_pool, ensure_work_pool  # noqa: E402
from tests.helpers import REPO  # noqa: E402

STARTUP_TIMEOUT = 120.0  # seconds; the server imports a lot on 2 busy cores
SCHEDULE_TIMEOUT = 60.0
FLOW_TIMEOUT = 1500.0  # the smoke pipeline through a worker: about 4 min on 2 busy cores


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture
def prefect_server(tmp_path):
    """A real Prefect server on 127.0.0.1, its home (and database) in a tmp folder; yields its log file."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # default 60: the test would wait
        "PREFECT_API_URL": api_url,
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 -- closed in teardown
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
           "--analytics-off", "--no-ui"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        start = time.monotonic()
        while True:
            assert proc.poll() is None, f"server exited: {(tmp_path / 'server.log').read_text()[-3000:]}"
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - start < STARTUP_TIMEOUT, "server did not start in time"
            time.sleep(0.5)
        print(f"prefect server started in {time.monotonic() - start:.1f} s")
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_HOME: tmp_path / "client_home"}):
            yield tmp_path / "server.log"
    finally:
        _stop(proc)
        log.close()


def test_scheduler_creates_runs_of_the_cron_deployment(prefect_server):
    server_log = prefect_server
    deployment_id = build_deployment(cron="*/5 * * * *", parameters={"profile": "smoke"}).apply()

    deadline = time.monotonic() + SCHEDULE_TIMEOUT
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
        assert [s.schedule.cron for s in deployment.schedules] == ["*/5 * * * *"]
        assert deployment.parameters == {"profile": "smoke"}
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=10)
            if runs or time.monotonic() > deadline:
                break
            time.sleep(1)
    # SQLAlchemy 2.1 breaks Prefect 3.8.8's scheduler ("Can't evaluate bulk DML statement"): pin < 2.1.
    assert runs, f"the scheduler created no flow run; server log:\n{server_log.read_text()[-3000:]}"
    assert all(r.state.is_scheduled() for r in runs)
    assert all(r.expected_start_time.minute % 5 == 0 for r in runs)
    assert runs[0].parameters["profile"] == "smoke"


def _copy_repository(dest: Path) -> Path:
    """The repository's tracked and unignored files, committed into a fresh git repo at ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=ncsn-test", "-c", "user.email=ncsn-test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "copy"], cwd=dest, check=True)
    return dest


def _artifacts(client, flow_run_id) -> dict:
    """``{key: artifact}`` of a flow run and its task runs (raw request: the sync client sends None filters)."""
    from prefect.client.schemas.objects import Artifact

    query = {"artifacts": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 50, "offset": 0, "sort": "KEY_ASC"}
    found = Artifact.model_validate_list(client.request("POST", "/artifacts/filter", json=query).json())
    return {a.key: a for a in found}


@pytest.mark.slow
def test_a_worker_runs_the_deployed_flow_with_parallel_stages(prefect_server, tmp_path):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    from tests.fingerprint import fingerprint, golden_path

    repo = _copy_repository(tmp_path / "ncsn")
    pool = "ncsn-test"
    ensure_work_pool(pool)
    deployment_id = deploy_to_work_pool(pool, parameters={"profile": "smoke"}, source=repo)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_HOME": str(tmp_path / "worker_home"), "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 -- closed below
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--limit", "1"],
                              cwd=repo, env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        flow_run = run_deployment(deployment_id, timeout=0)  # scheduled now; the worker picks it up
        deadline = time.monotonic() + FLOW_TIMEOUT
        with get_client(sync_client=True) as client:
            while not (flow_run := client.read_flow_run(flow_run.id)).state.is_final():
                assert worker.poll() is None, f"worker exited: {(tmp_path / 'worker.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"not done: {(tmp_path / 'worker.log').read_text()[-3000:]}"
                time.sleep(3)
            tasks = {t.name: t for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)}
            artifacts = _artifacts(client, flow_run.id)
    finally:
        _stop(worker)
        worker_log.close()

    assert flow_run.state.is_completed(), (tmp_path / "worker.log").read_text()[-5000:]
    assert flow_run.deployment_id == deployment_id
    assert sorted(tasks) == sorted(["prepare", "classifier", "train", "sample", "evaluate", "inpaint", "figures",
                                    "report"])
    assert all(t.state.is_completed() for t in tasks.values())
    after_prepare = [tasks[s] for s in ("classifier", "train", "figures")]  # independent once prepare is done
    assert max(t.start_time for t in after_prepare) < min(t.end_time for t in after_prepare), "no parallel stages"
    assert all(t.start_time >= tasks["prepare"].end_time for t in after_prepare)

    metrics = {row["metric"]: row["value"] for row in json.loads(artifacts["ncsn-metrics"].data)}
    assert "classifier_fid" in metrics
    summary = artifacts["ncsn-summary"].data
    assert "Every stage completed" in summary and "**Promoted:** `ncsn-mnist5k` version 1" in summary
    assert str(repo / "outputs" / "report" / "report.html") in summary
    assert float(artifacts["ncsn-training"].data) == 100.0
    assert artifacts["ncsn-training"].task_run_id == tasks["train"].id

    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=repo, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout + status.stderr  # every stage recorded in dvc.lock
    if golden_path().is_file():  # parallel stages give the results of `dvc repro`, bit for bit
        expected, found = json.loads(golden_path().read_text()), fingerprint(repo)
        for part, value in expected.items():
            if isinstance(value, dict):
                assert {k: found[part].get(k) for k in value} == value, part
            else:
                assert found[part] == value, part
