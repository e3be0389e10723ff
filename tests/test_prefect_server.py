"""Scheduled retraining against a real `prefect server start` on loopback.

The server's scheduler service must turn the deployment's cron schedule into scheduled flow
runs (the ephemeral server has no scheduler). Nothing is run: no serve process is started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("prefect")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId  # noqa: E402
from prefect.client.schemas.sorting import FlowRunSort  # noqa: E402
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings  # noqa: E402

from flows.deploy import build_deployment  # noqa: E402

STARTUP_TIMEOUT = 120.0  # seconds; the server imports a lot on 2 busy cores
SCHEDULE_TIMEOUT = 60.0


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
    log = open(tmp_path / "server.log", "w")
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
