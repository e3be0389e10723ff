"""A queued comparison: one ``dvc exp run --queue`` experiment per dataset, ``dvc queue start``, and
``dvc exp show`` lists each with its metrics and the parameters Hydra composed for it.

Runs in a temporary git copy of the repository on the smoke profile (fewer training steps), with
tiny MNIST and Fashion-MNIST IDX files written here, and tracks into one MLflow store so that the
runs of ``dvc exp run`` are checked for their provenance tags too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers import copy_repository, repo_env
from tests.data.test_idx_datasets import write_idx_dataset

pytestmark = pytest.mark.slow

EXPERIMENTS = {"exp-mnist": "mnist", "exp-fashion": "fashion_mnist"}
SMALLER = ["train.n_iters=20", "classifier.n_iters=20", "figures.toy_iters=20"]
QUEUE_TIMEOUT_S = 1800
STATUS_EVERY_S = 30
METRICS = "outputs/evaluate/metrics.json"


@dataclasses.dataclass(frozen=True)
class Queued:
    """``repo``: the git copy; ``shown``: ``{experiment name: its row of dvc exp show --json}``;
    ``store``: the MLflow store the stages tracked into; ``seconds``: the queue's wall time."""

    repo: Path
    shown: dict[str, dict[str, Any]]
    store: str
    seconds: float


def _dvc(repo: Path, env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _rows(shown: Any) -> Iterator[dict[str, Any]]:
    """Every experiment row (a dict with a name and data) in ``dvc exp show --json``."""
    if isinstance(shown, dict):
        if "name" in shown and isinstance(shown.get("data"), dict):
            yield shown
        for value in shown.values():
            yield from _rows(value)
    elif isinstance(shown, list):
        for value in shown:
            yield from _rows(value)


def _start_queue(repo: Path, env: dict[str, str], log: Path) -> None:
    """``dvc queue start``: its worker runs on detached, holding the output it was given, so that
    output goes to a file (a pipe would stay open until the worker ends)."""
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "--jobs", "1"], cwd=repo, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=120).returncode
    assert code == 0, f"dvc queue start failed:\n{log.read_text()[-3000:]}"


def _finished(repo: Path) -> set[str]:
    """The experiments that have finished: each leaves a git ref ``refs/exps/.../NAME``."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.split()
    return {ref.rsplit("/", 1)[-1] for ref in refs}


def _wait_for_queue(repo: Path, env: dict[str, str]) -> None:
    """Poll ``dvc queue status`` until no experiment is queued or running (bounded).

    ``dvc queue status`` costs a second of CPU, taken from the stages: it is asked every
    STATUS_EVERY_S (to see a failed experiment early), and every 2 s once each experiment has its
    git ref, which is cheap to look for meanwhile.
    """
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    asked, status = -math.inf, ""
    while time.monotonic() < deadline:
        if _finished(repo) >= set(EXPERIMENTS) or time.monotonic() - asked >= STATUS_EVERY_S:
            asked, status = time.monotonic(), _dvc(repo, env, "queue", "status")
            if not any(word in status for word in ("Queued", "Running")):
                return
        time.sleep(2)
    pytest.fail(f"the queue did not finish within {QUEUE_TIMEOUT_S} s:\n{status}")


@pytest.fixture(scope="module")
def queued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queued]:
    root = tmp_path_factory.mktemp("queue")
    repo = root / "ncsn"
    repo.mkdir()
    copy_repository(repo)
    data = root / "data"
    for seed, dataset in enumerate(EXPERIMENTS.values()):  # other images for each dataset
        write_idx_dataset(data, dataset, "none", n_train=128, n_test=64, seed=seed)
    store = f"sqlite:///{root / 'mlflow.db'}"
    env = repo_env(repo) | {"MLFLOW_TRACKING_URI": store}
    for name, dataset in EXPERIMENTS.items():
        _dvc(repo, env, "exp", "run", "--queue", "--name", name, "-S", "profile=smoke", "-S", f"dataset={dataset}",
             "-S", f"data.root={data}", *[a for s in SMALLER for a in ("-S", s)])
    start = time.monotonic()
    try:
        _start_queue(repo, env, root / "queue_start.log")
        _wait_for_queue(repo, env)
        seconds = time.monotonic() - start
        print(f"two queued smoke experiments: {seconds:.0f} s")
        shown = json.loads(_dvc(repo, env, "exp", "show", "--json"))
        rows = {row["name"]: row for row in _rows(shown) if row.get("name") in EXPERIMENTS}
        if set(rows) != set(EXPERIMENTS):
            logs = "\n".join(_dvc(repo, env, "queue", "logs", name, timeout=60)[-3000:] for name in EXPERIMENTS)
            pytest.fail(f"dvc exp show lists {sorted(rows)}, expected {sorted(EXPERIMENTS)}:\n{logs}")
        yield Queued(repo, rows, store, seconds)
    finally:
        for args in (["remove", "--queued"], ["stop", "--kill"]):  # nothing queued is started meanwhile
            subprocess.run([sys.executable, "-m", "dvc", "queue", *args], cwd=repo, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def _values(row: dict[str, Any], kind: str, file: str) -> dict[str, Any]:
    """The params or metrics of one experiment row, flattened to dotted keys."""
    def flat(prefix: str, value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(f"{prefix}{key}.", sub).items()}
        return {prefix[:-1]: value}

    section = (row["data"].get(kind) or {}).get(file) or {}
    assert "error" not in section, f"{row['name']}: {file}: {section.get('error')}"
    return flat("", section.get("data") or {})


def test_each_queued_experiment_is_listed_with_its_metrics_and_composed_params(queued: Queued) -> None:
    for name, dataset in EXPERIMENTS.items():
        row = queued.shown[name]
        assert row["data"].get("status", "Success") == "Success", row["data"].get("status")
        params = _values(row, "params", "params.yaml")
        # the values Hydra composed reach the experiment: none of these columns is empty
        assert params["base.dataset"] == dataset and params["profile"] == "smoke"
        assert params["model.arch"] == "unet" and params["train.n_iters"] == 20
        assert params["sample.sampler"] == "pc" and params["inpaint.n_steps_each"] == 2
        metrics = _values(row, "metrics", METRICS)
        assert math.isfinite(metrics["classifier_fid"]) and metrics["classifier_fid"] >= 0, metrics
        assert math.isfinite(metrics["classifier_is"])
    fids = [_values(queued.shown[n], "metrics", METRICS)["classifier_fid"] for n in EXPERIMENTS]
    assert fids[0] != fids[1]  # two datasets, two results
    table = _dvc(queued.repo, repo_env(queued.repo), "exp", "show", "--csv")
    header, *lines = table.splitlines()
    for column in ("classifier_fid", "model.arch", "train.n_iters", "sample.sampler", "base.dataset"):
        assert column in header.split(","), header
    assert sum(any(line.startswith(f"{n},") for line in lines) for n in EXPERIMENTS) == 2, table


def test_the_runs_of_queued_experiments_carry_their_provenance(queued: Queued) -> None:
    from dvc.utils.serialize import parse_yaml
    from mlflow import MlflowClient

    from ncsn.tracking.provenance import entry_hash

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=queued.repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    client = MlflowClient(tracking_uri=queued.store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`ncsn.stage` = 'evaluate'")
    by_exp = {run.data.tags.get("dvc_exp_name"): run for run in runs}
    assert set(EXPERIMENTS) <= set(by_exp), {n: r.data.tags for n, r in by_exp.items()}
    for name, dataset in EXPERIMENTS.items():
        tags = by_exp[name].data.tags
        assert tags["dataset"] == dataset and tags["profile"] == "smoke"
        assert tags["git_commit"] == tags["dvc_exp_baseline_rev"] == head
        lock = subprocess.run(["git", "show", f"{queued.shown[name]['rev']}:dvc.lock"], cwd=queued.repo,
                              capture_output=True, text=True, check=True).stdout
        entry = parse_yaml(lock, "dvc.lock")["stages"]["evaluate"]
        assert tags["dvc_stage_hash"] == entry_hash(entry)  # the experiment's own dvc.lock entry
        artifact = client.download_artifacts(by_exp[name].info.run_id, "params.yaml")
        params = Path(artifact).read_text()
        assert f"dataset: {dataset}" in params and "n_iters: 20" in params
