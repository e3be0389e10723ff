"""`ncsn pipeline` (ncsn.stages.runner) and its pieces: stage order (graph), overrides, one `dvc repro` per stage."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import dvc.repo  # noqa: F401  (at collection: DVC binds its log handlers to the sys.stdout of its first import)
import pytest
import yaml

from tests.dvc_repo import make_dvc_repo
from tests.helpers import REPO
from ncsn.stages import runner as pipeline
from ncsn.config import ConfigError
from ncsn.stages.graph import stage_graph, stage_order
from ncsn.stages.overrides import apply_overrides
from ncsn.stages.repro import StageFailed, repro_stage


@pytest.fixture(autouse=True)
def _no_dvc_analytics(monkeypatch):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_stage_order_of_the_real_pipeline_respects_its_dependencies():
    order = stage_order(REPO)
    assert sorted(order) == sorted(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    before = [("prepare", "train"), ("train", "sample"), ("sample", "evaluate"), ("prepare", "classifier"),
              ("classifier", "evaluate"), ("train", "inpaint"), ("prepare", "inpaint")]
    for first, then in before:
        assert order.index(first) < order.index(then), f"{first} should run before {then}: {order}"


def test_stage_graph_of_the_real_pipeline_names_each_stage_upstream():
    graph = stage_graph(REPO)
    assert list(graph) == stage_order(REPO)
    assert graph["prepare"] == [] and graph["train"] == ["prepare"] and graph["sample"] == ["train"]
    assert set(graph["evaluate"]) == {"prepare", "classifier", "train", "sample"}
    assert {"train", "figures"}.isdisjoint(graph["classifier"])  # independent: the flow runs them at once
    for stage, upstream in graph.items():
        assert all(list(graph).index(u) < list(graph).index(stage) for u in upstream)


def test_apply_overrides_writes_the_composition_of_conf(tmp_path):
    """params.yaml becomes exactly what `dvc exp run -S` composes: the profile's values, then the overrides."""
    from ncsn.config.composition import compose_params

    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before_text = params.read_text()
    apply_overrides(tmp_path, ["profile=cpu", "dataset=mnist5k"])
    assert params.read_text() == before_text  # the flow's defaults: no value changes, no rewrite

    cfg = apply_overrides(tmp_path, ["profile=smoke", "train.lr=5e-4", "inpaint.masks=[center]"])

    after = yaml.safe_load(params.read_text())
    expected = compose_params(["profile=smoke"])
    expected["train"]["lr"], expected["inpaint"]["masks"] = 5e-4, ["center"]
    assert after == expected
    assert after["train"]["n_iters"] == 40  # the smoke profile's value, written out
    assert cfg.profile == "smoke" and cfg.train.lr == 5e-4 and cfg.inpaint.masks == ("center",)
    changed = {k for k in _flat(after) if _flat(after)[k] != _flat(yaml.safe_load(before_text)).get(k)}
    assert {"profile", "train.lr", "inpaint.masks", "train.n_iters", "model.ngf"} <= changed


@pytest.mark.parametrize("override", ["train.lr=-1", "profile=fast", "train.lrr=1", "+train.extra=1",
                                      "train.lr==", "other.yaml:train.lr=1"])
def test_apply_overrides_rejects_bad_values_and_restores_the_file(tmp_path, override):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    original = params.read_bytes()
    with pytest.raises(ConfigError):
        apply_overrides(tmp_path, ["profile=smoke", override])
    assert params.read_bytes() == original


def test_stage_failed_tells_transient_failures_from_permanent_ones():
    assert StageFailed("train", 255, status=-9).transient  # SIGKILL: OOM killer, preemption
    assert StageFailed("train", 255, status=143).transient  # SIGTERM through a shell
    assert not StageFailed("train", 255, status=2).transient  # ncsn: user error
    assert not StageFailed("train", 255, status=1).transient  # a crash
    assert StageFailed("train", 255, tail=["ERROR: Unable to acquire lock. Most likely ..."]).transient
    assert not StageFailed("train", 255, tail=["ERROR: failed to reproduce 'train': no such file"]).transient
    copy = pickle.loads(pickle.dumps(StageFailed("train", 255, status=-9, tail=["x"])))
    assert (copy.stage, copy.returncode, copy.status, copy.tail, copy.transient) == ("train", 255, -9, ["x"], True)


def test_repro_stage_runs_a_stage_and_raises_on_failure(tmp_path, capsys):
    repo = make_dvc_repo(tmp_path / "repo", {
        "hello": {"cmd": "echo hello > hello.txt", "outs": ["hello.txt"]},
        "broken": {"cmd": "echo oops && exit 3", "deps": ["hello.txt"]},
    })
    repro_stage(repo, "hello")
    assert (repo / "hello.txt").read_text() == "hello\n"
    assert "Running stage 'hello'" in capsys.readouterr().out  # streamed
    with pytest.raises(StageFailed) as failure:
        repro_stage(repo, "broken")
    assert (failure.value.stage, failure.value.status) == ("broken", 3)
    assert failure.value.returncode != 0 and not failure.value.transient
    assert any("oops" in line for line in failure.value.tail)


@contextlib.contextmanager
def _fake_parent_run(cfg, repo):
    """Stands in for the MLflow parent run: exports the id the stages nest under."""
    os.environ["NCSN_MLFLOW_PARENT_RUN_ID"] = "parent-123"
    try:
        yield
    finally:
        del os.environ["NCSN_MLFLOW_PARENT_RUN_ID"]


def test_ncsn_pipeline_runs_every_stage_in_the_parent_run(tmp_path, monkeypatch, capsys):
    repo = make_dvc_repo(tmp_path / "repo", {
        "second": {"cmd": "cat first.txt > second.json", "deps": ["first.txt"],
                   "metrics": [{"second.json": {"cache": False}}]},
        "first": {"cmd": 'echo "{\\"parent\\": \\"$NCSN_MLFLOW_PARENT_RUN_ID\\"}" > first.txt',
                  "params": ["profile"], "outs": ["first.txt"]},
    })
    monkeypatch.chdir(repo)
    monkeypatch.setattr(pipeline, "parent_run", _fake_parent_run)

    assert pipeline.main(["-S", "profile=bogus"]) == 2  # a user error, before any stage
    assert not (repo / "first.txt").exists()

    original = (repo / "params.yaml").read_bytes()
    assert pipeline.main(["-S", "train.lr=5e-4", "--restore-params"]) == 0
    out = capsys.readouterr().out
    assert "stages first -> second" in out
    assert (repo / "second.json").read_text().strip() == '{"parent": "parent-123"}'  # nested in the parent run
    assert "Metrics: every metric of every stage: dvc metrics show" in out  # no evaluate stage, no headline
    assert "second: second.json" in out
    assert (repo / "params.yaml").read_bytes() == original


def test_ncsn_pipeline_exits_1_when_a_stage_fails(tmp_path, monkeypatch):
    repo = make_dvc_repo(tmp_path / "repo", {"fails": {"cmd": "exit 1"}})
    monkeypatch.chdir(repo)
    monkeypatch.setattr(pipeline, "parent_run", _fake_parent_run)
    assert pipeline.main([]) == 1


def _two_stages(root: Path) -> Path:
    return make_dvc_repo(root, {
        "second": {"cmd": "cat first.txt > second.txt", "deps": ["first.txt"], "outs": ["second.txt"]},
        "first": {"cmd": "echo one > first.txt", "outs": ["first.txt"]},
    })


def test_ncsn_pipeline_stage_runs_that_stage_and_those_it_depends_on(tmp_path, monkeypatch, capsys):
    repo = _two_stages(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(pipeline, "parent_run", _fake_parent_run)
    assert pipeline.main(["first"]) == 0
    out = capsys.readouterr().out
    assert "stages first (profile" in out and (repo / "first.txt").exists() and not (repo / "second.txt").exists()
    assert "  first: first.txt" in out and "  second:" not in out  # the outputs of the stages it ran
    assert pipeline.main(["third"]) == 2
    assert capsys.readouterr().err.strip() == \
        "ncsn pipeline: error: no stage 'third' in dvc.yaml; the stages: first, second."


def test_ncsn_pipeline_refuses_a_malformed_params_yaml_in_one_line(tmp_path, monkeypatch, capsys):
    """Issue 27: it printed a 59-line yaml ParserError; now one line, exit 2, nothing run or written."""
    repo = _two_stages(tmp_path / "repo")
    broken = b"train: {lr: [1e-3, 2e-3\nbase: {seed: 1}\n"
    (repo / "params.yaml").write_bytes(broken)
    monkeypatch.chdir(repo)
    monkeypatch.setattr(pipeline, "parent_run", _fake_parent_run)
    assert pipeline.main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"ncsn pipeline: error: {repo / 'params.yaml'}: not valid YAML"
                                         " (while parsing a flow sequence at line 2, column 5)."]
    assert "Traceback" not in captured.out + captured.err and "running stage" not in captured.out
    assert (repo / "params.yaml").read_bytes() == broken and not (repo / "first.txt").exists()


def test_the_retraining_workflow_passes_the_github_workflow_schema(tmp_path):
    """`check-jsonschema` with its vendored GitHub workflow schema (offline), and a valid cron."""
    from prefect.client.schemas.schedules import CronSchedule

    workflow = REPO / ".github" / "workflows" / "retrain.yml"
    lint = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    result = subprocess.run([*lint, str(workflow)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

    triggers = yaml.safe_load(workflow.read_text())[True]  # YAML 1.1 reads the key `on` as True
    assert "workflow_dispatch" in triggers
    for entry in triggers["schedule"]:
        CronSchedule(cron=entry["cron"])  # raises on an invalid cron string

    broken = tmp_path / "broken.yml"  # the linter does catch a mistake
    broken.write_text(workflow.read_text().replace("runs-on:", "runs_on:"))
    assert subprocess.run([*lint, str(broken)], capture_output=True).returncode == 1


def test_the_pipeline_ends_with_the_headline_figures_and_their_intervals(tmp_path):
    from ncsn.stages.results import results_summary

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"classifier_fid": 3.25, "classifier_fid_ci95": [2.9, 3.61], "classifier_is": 7.8,
                                "classifier_precision": 0.91, "bits_per_dim": 1.234, "bits_per_dim_se": 0.01,
                                "n_samples": 1000, "extractor": "ncsn-digit-classifier", "class_share_0": 0.1}))
    lines = results_summary(path).splitlines()
    assert lines[0] == ("Results (1000 samples, ncsn-digit-classifier features; "
                        "every metric of every stage: dvc metrics show):")
    assert lines[1].split() == ["classifier_fid", "3.25", "(95", "%", "interval", "2.9", "to", "3.61)"]
    assert lines[2].split() == ["classifier_is", "7.8"] and lines[3].split() == ["classifier_precision", "0.91"]
    assert lines[4].split() == ["bits_per_dim", "1.234", "±", "0.01", "(standard", "error)"]
    assert len(lines) == 5  # nothing but the headline
    path.write_text("{not json")
    assert results_summary(path) == "Metrics: every metric of every stage: dvc metrics show\n"
