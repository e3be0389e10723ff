"""A tracking server that is down, wrong or killed costs no result (issue 26): real servers, real processes.

One git copy of the repository on the smoke profile, made smaller still (``SMALLER``), and each
pipeline run up to the evaluate stage (``ncsn pipeline evaluate``: it registers the model, the
last thing these tests read; inpaint, figures and report track the same way). In this order:

1. a wrong ``MLFLOW_TRACKING_URI``, and a second pipeline started in the same repository while the
   first runs: the first starts its stages at once and tracks into the local store, the second waits;
2. ``ncsn tracking sync`` to a server started afterwards, twice;
3. against a real server: SIGTERM, then SIGINT, during training (no run stays RUNNING, each rerun
   resumes from the snapshot), then the server killed during the train stage: the pipeline
   finishes; after a restart, a sync brings the server up to the local store.

Each step bounds its own time and stops every process it started.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import copy_repository, repo_env
from tests.mlflow_server import free_port, kill_server, mlflow_server

pytestmark = pytest.mark.slow

SMALLER = ["profile=smoke", "train.n_iters=20", "classifier.n_iters=20", "evaluate.bpd_images=0"]
TARGET = "evaluate"  # ncsn pipeline TARGET: the stages up to the one that registers the model
PIPELINE_TIMEOUT_S = 900
STAGES = ("prepare", "classifier", "train", "sample", "evaluate")
WARNING = "ncsn: warning: tracking server"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A command whose merged output is read, with arrival times, by a thread."""

    def __init__(self, args: list[str], repo: Path, env: dict[str, str]) -> None:
        self.start = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        # SIGINT at its default, as for a command in a terminal, even where this test runs with it ignored
        # (a background job of a script): the tests send the pipeline a Ctrl-C.
        self.proc = subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, preexec_fn=_default_sigint)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.start, line.rstrip("\n")))

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, text: str) -> float | None:
        """Seconds from the start to the first line holding ``text``."""
        return next((t for t, line in self.lines if text in line), None)

    def wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"exited ({self.proc.returncode}) before {what}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s:\n{self.output[-3000:]}"
            time.sleep(0.2)

    def wait(self, timeout: float = PIPELINE_TIMEOUT_S) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"still running after {timeout:.0f} s:\n{self.output[-3000:]}")
        self._reader.join(timeout=30)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("failover") / "ncsn"
    root.mkdir()
    copy_repository(root)
    yield root


@contextlib.contextmanager
def started(args: list[str], repo: Path, env: dict[str, str]) -> Iterator[Proc]:
    proc = Proc(args, repo, env)
    try:
        yield proc
    finally:
        proc.stop()


def pipeline(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "ncsn", "pipeline", TARGET, *[a for s in [*SMALLER, *overrides] for a in ("-S", s)]]


def sync(repo: Path, uri: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ncsn", "tracking", "sync", "--to", uri, *args], cwd=repo,
                            env=repo_env(repo), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sync failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def runs(uri: str) -> list:
    c = client(uri)
    return list(c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=1000))


def local_store(repo: Path) -> str:
    return f"sqlite:///{repo / 'outputs/mlflow/mlflow.db'}"


def history(uri: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client(uri).get_metric_history(run_id, key))


def test_a_wrong_uri_costs_seconds_and_a_second_pipeline_waits(repo: Path) -> None:
    env = repo_env(repo) | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    with started(pipeline(), repo, env) as first:
        first.wait_for(lambda: "ncsn pipeline: stages" in first.output, 120, "the first pipeline's start")
        with started(pipeline(), repo, env) as second:
            assert first.wait() == 0, first.output[-3000:]
            assert second.wait() == 0, second.output[-3000:]
    began, warned, staged = (first.first(t) for t in ("ncsn pipeline: stages", WARNING, "running stage 'prepare'"))
    print(f"wrong URI: preflight {warned - began:.1f} s, first stage {staged - began:.1f} s after the pipeline began")
    # Bounds for 2 shared cores, where importing MLflow alone takes seconds (the probe itself takes
    # milliseconds on a refused connection), and the local store's tables are created meanwhile.
    assert warned - began <= 15.0, first.output[:2000]
    assert staged - began <= 60.0, first.output[:2000]
    assert "Connection refused" in first.output
    assert first.output.count(WARNING) == 1 and "local store" in first.output
    assert "Traceback" not in first.output + second.output
    assert f"{1 + len(STAGES)} run(s) in the local store wait for `ncsn tracking sync`" in first.output  # its own
    # The second said who it waited for, then found everything done: the same outputs.
    assert "another ncsn pipeline is running" in second.output and "pid " in second.output
    assert "Running stage" not in second.output  # DVC skipped every stage
    outputs = first.output.split("Outputs:")[1].splitlines()[:1 + len(STAGES)]
    assert outputs == second.output.split("Outputs:")[1].splitlines()[:1 + len(STAGES)]
    assert [line.split(":")[0].strip() for line in outputs[1:]] == list(STAGES)
    stored = runs(local_store(repo))
    # Each stage ran once; each pipeline has its parent run.
    assert sorted(r.data.tags["ncsn.stage"] for r in stored if r.info.status == "FINISHED") == \
        sorted(("pipeline", "pipeline", *STAGES)), [(r.info.run_name, r.info.status) for r in stored]


def test_sync_to_a_server_started_afterwards(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        listed = sync(repo, uri, "--dry-run")
        n_runs = 2 + len(STAGES)  # two pipelines, and the stages of the first
        assert f"would copy {n_runs} run(s)" in listed and not runs(uri)
        copied = sync(repo, uri)
        assert f"copied {n_runs} run(s)" in copied and "ncsn-mnist5k v1 (champion)" in copied, copied
        all_there = runs(uri)
        assert {r.info.status for r in all_there} == {"FINISHED"}
        there = {r.data.tags["ncsn.stage"]: r for r in all_there}
        assert set(there) == {"pipeline", *STAGES}
        parents = {r.info.run_id for r in all_there if r.data.tags["ncsn.stage"] == "pipeline"}
        assert {there[s].data.tags["mlflow.parentRunId"] for s in STAGES} <= parents  # nested as before
        local = {r.data.tags["ncsn.stage"]: r for r in runs(local_store(repo))}
        assert history(uri, there["train"].info.run_id, "train_loss") == \
            history(local_store(repo), local["train"].info.run_id, "train_loss")
        assert there["evaluate"].data.metrics == local["evaluate"].data.metrics
        champion = client(uri).get_model_version_by_alias("ncsn-mnist5k", "champion")
        assert champion.run_id == there["evaluate"].info.run_id
        assert "copied 0 run(s)" in sync(repo, uri) and len(runs(uri)) == n_runs  # a second sync adds nothing


def _checkpoint_steps(repo: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (repo / "outputs/train/checkpoints").glob("ckpt_*.pt"))


def _interrupt_training(repo: Path, env: dict[str, str], uri: str, sig: signal.Signals, code: int, done: int) -> int:
    """A pipeline stopped by ``sig`` once its train stage, resumed from step ``done``, wrote a new snapshot:
    it exits with ``code`` and leaves no run RUNNING in ``uri``; returns the last snapshot's step."""
    with started(pipeline("train.n_iters=2000"), repo, env) as run:
        run.wait_for(lambda: "running stage 'train'" in run.output, 300, "train stage")
        run.wait_for(lambda: f"resuming from step {done}" in run.output, 120, f"a resume from step {done}")
        run.wait_for(lambda: _checkpoint_steps(repo)[-1] > done, 300, "a new checkpoint")
        run.proc.send_signal(sig)
        assert run.wait(120) == code, run.output[-3000:]
    assert "Traceback" not in run.output
    stored = runs(uri)
    assert not [r.info.run_name for r in stored if r.info.status == "RUNNING"], \
        "\n".join(f"{t:.1f} s {line}" for t, line in run.lines)[-3000:]
    killed = [r for r in stored if r.info.status == "KILLED"]
    assert {r.data.tags["ncsn.stage"] for r in killed} >= {"pipeline", "train"}
    train = max((r for r in killed if r.data.tags["ncsn.stage"] == "train"), key=lambda r: r.info.start_time)
    steps = [step for step, _, _ in history(uri, train.info.run_id, "train_loss")]
    assert not steps or min(steps) > done  # its first step was the snapshot's + 1
    return _checkpoint_steps(repo)[-1]


def test_signals_and_a_server_killed_during_training_cost_no_result(repo: Path,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("killed")
    done = _checkpoint_steps(repo)[-1]
    with mlflow_server(root) as first_uri:
        uri = first_uri
        env = repo_env(repo) | {"MLFLOW_TRACKING_URI": uri}
        for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            done = _interrupt_training(repo, env, uri, sig, code, done)
        with started(pipeline(f"train.n_iters={done + 40}"), repo, env) as run:
            c = client(uri)

            def train_running() -> bool:
                ids = [e.experiment_id for e in c.search_experiments()]
                return bool(ids and c.search_runs(ids, "tags.`ncsn.stage` = 'train' and attributes.status = 'RUNNING'"))

            run.wait_for(train_running, 300, "the train run on the server")
            kill_server(uri)
            assert run.wait() == 0, run.output[-3000:]
    assert f"resuming from step {done}" in run.output  # the rerun after SIGINT
    assert "Traceback" not in run.output and 1 <= run.output.count(WARNING) <= 2  # the train stage's, the pipeline's
    outputs = run.output.split("Outputs:")[1]
    for line in outputs.splitlines()[1:1 + len(STAGES)]:
        for out in line.split(": ", 1)[1].split(", "):
            assert (repo / out).exists(), out
    with mlflow_server(root) as uri:  # restarted on its database
        assert {r.info.status for r in runs(uri) if r.data.tags.get("ncsn.stage") == "train"} >= {"RUNNING"}
        copied = sync(repo, uri)
        print(copied.splitlines()[-1])
        there = runs(uri)
        assert not [r.info.run_name for r in there if r.info.status == "RUNNING"], copied
        local = [r for r in runs(local_store(repo)) if r.data.tags.get("ncsn.tracking.failover_from") == first_uri]
        train = next(r for r in local if r.data.tags["ncsn.stage"] == "train")
        server_train = train.data.tags["ncsn.tracking.continues"]  # completed in place
        assert history(uri, server_train, "train_loss") == history(local_store(repo), train.info.run_id, "train_loss")
        assert min(step for step, _, _ in history(uri, server_train, "train_loss")) > done
        evaluate = next(r for r in local if r.data.tags["ncsn.stage"] == "evaluate")
        versions = client(uri).search_model_versions("name = 'ncsn-mnist5k'")
        synced = [v for v in versions if v.tags.get("ncsn.tracking.source_version") ==
                  f"ncsn-mnist5k/{evaluate.data.tags['ncsn.model_version']}"]
        assert len(synced) == 1 and synced[0].tags["ncsn.verified"] == "true"
        assert synced[0].tags["checkpoint_sha256"] == \
            client(local_store(repo)).get_model_version("ncsn-mnist5k", evaluate.data.tags["ncsn.model_version"]).tags[
                "checkpoint_sha256"]
        assert "copied 0 run(s)" in sync(repo, uri)
