"""Provenance tags: the DVC stage hash a stage computes while it runs is the key of the
``dvc.lock`` entry DVC writes after it (and DVC's own run-cache key); git commit and dirty flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ncsn.tracking.provenance import entry_hash, git_state, lock_hash, lock_hashes, run_tags, stage_hash
from tests.dvc_repo import make_dvc_repo
from tests.helpers import REPO

GIT = ["git", "-c", "user.name=ncsn-test", "-c", "user.email=ncsn-test@localhost"]


def _key_writer(stage: str, out: str) -> str:
    """A stage command that writes the stage's own hash, computed while it runs, to ``out``."""
    code = f"from ncsn.tracking.provenance import stage_hash; open('{out}', 'w').write(stage_hash('.', '{stage}'))"
    return f'{sys.executable} -c "{code}"'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_dvc_repo(tmp_path / "repo", {
        "a": {"cmd": _key_writer("a", "a.txt"), "deps": ["src"], "params": ["train.lr"], "outs": ["a.txt"]},
        "b": {"cmd": _key_writer("b", "b.txt"), "deps": ["a.txt", "src/x.py"], "params": [{"params.yaml": None}],
              "outs": ["b.txt"]},
    })
    (root / "src").mkdir()
    (root / "src" / "x.py").write_text("x = 1\n")
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "init"], cwd=root, check=True)
    return root


def _repro(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_hash_a_stage_computes_while_it_runs_is_the_key_of_its_dvc_lock_entry(repo: Path) -> None:
    assert stage_hash(repo, "b") is None  # a dep (a.txt) is missing: DVC would not run it either
    _repro(repo)
    during = {stage: (repo / f"{stage}.txt").read_text() for stage in ("a", "b")}
    after = lock_hashes(repo)
    assert during == after and len(set(after.values())) == 2
    assert all(len(key) == 64 for key in after.values())
    for key in after.values():  # DVC's run cache files each stage under this key
        assert (repo / ".dvc" / "cache" / "runs" / key[:2] / key).is_dir()
    assert {stage: stage_hash(repo, stage) for stage in after} == after  # from outside, afterwards
    assert lock_hash(repo) and len(lock_hash(repo)) == 64


def test_the_hash_follows_the_stage_inputs_and_nothing_else(repo: Path) -> None:
    _repro(repo)
    before = lock_hashes(repo)
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("  lr: 0.001", "  lr: 0.002"))
    assert stage_hash(repo, "a") != before["a"] and stage_hash(repo, "b") != before["b"]
    (repo / "params.yaml").write_text(params.replace("  n_test: 1000", "  n_test: 999"))
    assert stage_hash(repo, "a") == before["a"]  # a reads train.lr only
    assert stage_hash(repo, "b") != before["b"]  # b reads every param
    (repo / "params.yaml").write_text(params)
    (repo / "src" / "x.py").write_text("x = 2\n")
    assert stage_hash(repo, "a") != before["a"] and stage_hash(repo, "b") != before["b"]
    (repo / "src" / "x.py").write_text("x = 1\n")
    assert {stage: stage_hash(repo, stage) for stage in before} == before
    assert stage_hash(repo, "no_such_stage") is None


def test_entry_hash_leaves_out_the_outs_hashes_sizes_and_file_counts() -> None:
    entry = {"cmd": "c", "deps": [{"path": "d", "hash": "md5", "md5": "1" * 32, "size": 3}],
             "params": {"params.yaml": {"x": 1}}, "outs": [{"path": "o", "hash": "md5", "md5": "2" * 32, "size": 9}]}
    same = {**entry, "deps": [{**entry["deps"][0], "size": 4}], "outs": [{"path": "o", "md5": "3" * 32}]}
    assert entry_hash(entry) == entry_hash(same)
    assert entry_hash(entry) != entry_hash({**entry, "params": {"params.yaml": {"x": 2}}})
    assert entry_hash(entry) != entry_hash({**entry, "outs": [{"path": "p"}]})


def test_git_commit_and_dirty_flag(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert git_state(repo) == {"git_commit": head, "git_dirty": "false"}
    (repo / "src" / "x.py").write_text("x = 3\n")
    assert git_state(repo) == {"git_commit": head, "git_dirty": "true"}
    (tmp_path / "plain").mkdir()
    assert git_state(tmp_path / "plain") == {"git_commit": "unknown", "git_dirty": "unknown"}
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", head)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    tags = run_tags(repo, "mnist", "smoke", "a")
    assert tags["dataset"] == "mnist" and tags["profile"] == "smoke" and tags["git_commit"] == head
    assert tags["dvc_exp_name"] == "exp-1" and tags["dvc_exp_baseline_rev"] == head
    assert "dvc_stage_hash" not in tags  # not run by DVC
    monkeypatch.setenv("DVC_STAGE", "a")  # as DVC sets it for the stage's command
    assert run_tags(repo, "mnist", "smoke", "a")["dvc_stage_hash"] == stage_hash(repo, "a")
    monkeypatch.setenv("DVC_STAGE", "b")
    assert "dvc_stage_hash" not in run_tags(repo, "mnist", "smoke", "b")  # its dep a.txt is missing
    assert "dvc_stage_hash" not in run_tags(repo, "mnist", "smoke")  # the parent run
