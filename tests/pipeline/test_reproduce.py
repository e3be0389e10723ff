"""Bringing a run back from its MLflow tags, and DVC seeing every composed value.

Both use the session's smoke pipeline (``tests.smoke_fixtures.server_smoke_run``: ``ncsn pipeline
-S profile=smoke`` in a git copy, tracked into an MLflow server), so no extra pipeline runs here
except the reproduction itself, which stops at ``evaluate``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import repo_env

pytestmark = pytest.mark.slow

STAGES = {"prepare", "classifier", "train", "sample", "evaluate", "inpaint", "figures", "report"}
REPRO_TIMEOUT_S = 1200


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _dvc(repo: Path, *args: str, timeout: float = 300) -> str:
    return _run([sys.executable, "-m", "dvc", *args], repo, repo_env(repo), timeout)


def _without_times(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics, wall times left out (they differ from run to run)."""
    return {k: v for k, v in metrics.items() if not any(w in k for w in ("seconds", "time", "timing"))}


def _pipeline_and_stages(client: Any) -> tuple[Any, dict[str, Any]]:
    """The first pipeline run in the store and its stage runs by stage."""
    ids = [e.experiment_id for e in client.search_experiments()]
    parent = client.search_runs(ids, "tags.`ncsn.stage` = 'pipeline'", order_by=["attributes.start_time ASC"])[0]
    children = client.search_runs(ids, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, {run.data.tags["ncsn.stage"]: run for run in children}


def test_every_run_of_the_pipeline_is_tagged_with_its_provenance(server_smoke_run) -> None:
    from mlflow import MlflowClient

    from ncsn.tracking.provenance import lock_hash, lock_hashes

    repo = server_smoke_run.repo
    parent, stages = _pipeline_and_stages(MlflowClient(tracking_uri=server_smoke_run.uri))
    assert set(stages) == STAGES
    head = _run(["git", "rev-parse", "HEAD"], repo).strip()
    keys = lock_hashes(repo)  # dvc.lock as the pipeline left it
    for run in (parent, *stages.values()):
        tags = run.data.tags
        assert tags["dataset"] == "mnist5k" and tags["profile"] == "smoke", tags
        assert tags["git_commit"] == head and tags["git_dirty"] == "true"  # params.yaml rewritten by -S
    for stage, run in stages.items():  # computed while the stage ran, equal to its dvc.lock entry after
        assert run.data.tags["dvc_stage_hash"] == keys[stage], stage
    assert parent.data.tags["dvc_lock_hash"] == lock_hash(repo)


def test_a_run_brought_back_from_its_tags_gives_bit_identical_metrics(server_smoke_run, tmp_path: Path) -> None:
    """git checkout the run's commit, restore its params.yaml artifact, dvc repro: the same metrics."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server_smoke_run.uri)
    _, stages = _pipeline_and_stages(client)
    original = stages["evaluate"]
    fresh = tmp_path / "fresh"
    _run(["git", "clone", "-q", str(server_smoke_run.repo), str(fresh)], tmp_path)
    _run(["git", "checkout", "-q", original.data.tags["git_commit"]], fresh)
    params = client.download_artifacts(original.info.run_id, "params.yaml", str(tmp_path))
    shutil.copyfile(params, fresh / "params.yaml")
    _dvc(fresh, "repro", "evaluate", timeout=REPRO_TIMEOUT_S)

    metrics = "outputs/evaluate/metrics.json"
    before = json.loads((server_smoke_run.repo / metrics).read_text())
    after = json.loads((fresh / metrics).read_text())
    assert _without_times(after) == _without_times(before)  # equal floats: bit for bit
    assert "classifier_fid" in after
    from ncsn.tracking.provenance import lock_hashes

    assert lock_hashes(fresh)["evaluate"] == original.data.tags["dvc_stage_hash"]  # the same inputs, byte for byte
    rerun = MlflowClient(tracking_uri=f"sqlite:///{fresh / 'outputs/mlflow/mlflow.db'}")
    (again,) = rerun.search_runs([e.experiment_id for e in rerun.search_experiments()],
                                 "tags.`ncsn.stage` = 'evaluate'")
    assert again.data.tags["dvc_stage_hash"] == original.data.tags["dvc_stage_hash"]
    assert _without_times(again.data.metrics) == _without_times(original.data.metrics)


def test_a_value_changed_inside_a_profile_reruns_exactly_the_stages_that_read_it(server_smoke_run,
                                                                                 tmp_path: Path) -> None:
    """inpaint.n_steps_each lives in ncsn/conf/profile/smoke.yaml; recomposed, params.yaml carries it,
    and DVC names inpaint and report (which reads every param), with real values in params diff."""
    from ncsn.config.composition import write_params

    repo = tmp_path / "copy"
    shutil.copytree(server_smoke_run.repo, repo, symlinks=True)
    git = ["git", "-c", "user.name=ncsn-test", "-c", "user.email=ncsn-test@localhost"]
    _run([*git, "add", "-A"], repo)
    _run([*git, "commit", "-q", "-m", "the smoke run"], repo)
    assert json.loads(_dvc(repo, "status", "--json")) == {}

    profile = repo / "ncsn/conf/profile/smoke.yaml"
    text, line = profile.read_text(), "inpaint: {n_images: 4, n_steps_each: 2}"
    assert line in text
    profile.write_text(text.replace(line, line.replace("n_steps_each: 2", "n_steps_each: 3")))
    write_params(repo / "params.yaml", ["profile=smoke"], repo / "ncsn/conf")  # as ncsn pipeline and dvc exp run -S

    assert set(json.loads(_dvc(repo, "status", "--json"))) == {"inpaint", "report"}
    diff = json.loads(_dvc(repo, "params", "diff", "--json"))["params.yaml"]
    assert list(diff) == ["inpaint.n_steps_each"]
    assert (diff["inpaint.n_steps_each"]["old"], diff["inpaint.n_steps_each"]["new"]) == (2, 3)
    every = json.loads(_dvc(repo, "params", "diff", "--all", "--json"))["params.yaml"]
    for key, value in {"model.arch": "unet", "model.ngf": 8, "train.n_iters": 40, "sample.sampler": "pc",
                       "sample.n_steps_each": 2, "base.dataset": "mnist5k", "profile": "smoke"}.items():
        assert (every[key]["old"], every[key]["new"]) == (value, value), key
