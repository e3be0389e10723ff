"""The whole pipeline for real: ``dvc repro`` of the ``smoke`` profile in a temporary git copy.

Checks what a user of ``make run`` relies on: every output that ``dvc.yaml`` declares exists,
every metric is a finite number, and the model is registered with a ``champion`` alias.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import copy_repository, repo_env

pytestmark = pytest.mark.slow


def _numbers(value) -> list[float]:
    """Every number in a nested JSON value."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    repo = tmp_path_factory.mktemp("clone") / "ncsn"
    repo.mkdir()
    copy_repository(repo)
    from ncsn.config.composition import write_params

    write_params(repo / "params.yaml", ["profile=smoke"], repo / "ncsn" / "conf")  # as `dvc exp run -S` does
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=repo_env(repo),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"dvc repro failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return repo, result


def test_every_declared_output_exists(smoke_run) -> None:
    from ncsn.stages.graph import stage_outputs, stage_order

    repo, _ = smoke_run
    outputs = stage_outputs(repo)
    assert set(stage_order(repo)) == {"prepare", "classifier", "train", "sample", "evaluate", "inpaint",
                                      "figures", "report"}
    for stage, outs in outputs.items():
        for out in outs:
            path = repo / out
            assert path.exists(), f"stage {stage}: {out} missing"
            if path.is_file():
                assert path.stat().st_size > 0, f"stage {stage}: {out} is empty"


def test_metrics_are_finite_numbers(smoke_run) -> None:
    repo, _ = smoke_run
    for path in (repo / "outputs/evaluate/metrics.json", repo / "outputs/classifier/metrics.json"):
        numbers = _numbers(json.loads(path.read_text()))
        assert numbers, f"{path} holds no numbers"
        assert all(math.isfinite(n) for n in numbers), f"{path}: {numbers}"
    metrics = json.loads((repo / "outputs/evaluate/metrics.json").read_text())
    assert metrics["classifier_fid"] >= 0 and 1.0 <= metrics["classifier_is"] <= 10.0
    shown = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout
    assert "classifier_fid" in shown


def test_the_model_is_registered_and_champion(smoke_run) -> None:
    from mlflow import MlflowClient

    repo, _ = smoke_run
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'outputs/mlflow/mlflow.db'}")
    versions = client.search_model_versions("name='ncsn-mnist5k'")
    assert len(versions) == 1
    champion = client.get_model_version_by_alias("ncsn-mnist5k", "champion")
    assert champion.version == versions[0].version
    assert champion.status == "READY"


def test_the_report_has_every_section_and_every_input(smoke_run) -> None:
    from tests.reporting.test_report import SECTION_IDS, parse

    repo, _ = smoke_run
    html = (repo / "outputs/report/report.html").read_text()
    assert parse(html).sections == list(SECTION_IDS)
    assert "not available" not in html  # every stage's files reached the report


def test_results_are_bit_identical_to_the_golden_record(smoke_run) -> None:
    """Metrics, weights, sample bytes and inpaintings equal those recorded before the refactors."""
    from tests.fingerprint import fingerprint, golden_path

    repo, _ = smoke_run
    found = fingerprint(repo)
    path = golden_path()
    if os.environ.get("NCSN_RECORD_GOLDEN") == "1":
        path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    if not path.is_file():
        pytest.skip(f"no golden record for this CPU ({path.name}); record one with NCSN_RECORD_GOLDEN=1")
    expected = json.loads(path.read_text())
    for part in expected:
        if isinstance(expected[part], dict):
            for key, value in expected[part].items():
                assert found[part].get(key) == value, f"{part}.{key}: expected {value!r}, found {found[part].get(key)!r}"
        else:
            assert found[part] == expected[part], part
