"""A new embedded store is a copy of an empty database migrated once per MLflow version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ncsn.tracking.store_seed import seed_sqlite_store, template_path

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


def _schema(db: Path) -> tuple[set, list]:
    """Each table and index with its clauses as a set (MLflow's migrations order CHECK constraints
    differently from one run to the next), and the schema revision."""
    con = sqlite3.connect(db)
    try:
        return ({(kind, name, frozenset((sql or "").split(", \n"))) for kind, name, sql
                 in con.execute("SELECT type, name, sql FROM sqlite_master")},
                con.execute("SELECT version_num FROM alembic_version").fetchall())
    finally:
        con.close()


def test_a_seeded_store_is_the_store_mlflow_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert not template_path().exists()
    seeded, migrated = tmp_path / "seeded" / "mlflow.db", tmp_path / "migrated" / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{seeded}")
    assert template_path().exists() and template_path().parent == tmp_path / "cache" / "ncsn"
    migrated.parent.mkdir()
    for db in (seeded, migrated):  # MLflow opens both as its own and adds its default experiment
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        run = client.create_run(client.create_experiment("e", artifact_location=(db.parent / "a").as_uri()))
        client.log_metric(run.info.run_id, "loss", 0.5, step=3)
        client.set_terminated(run.info.run_id)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [3]
        assert [e.name for e in client.search_experiments()] == ["e", "Default"]
    assert _schema(seeded) == _schema(migrated)
    assert oct(seeded.stat().st_mode & 0o777) == "0o644"


def test_an_existing_store_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "mlflow.db"
    assert seed_sqlite_store(f"sqlite:///{db}")
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    client.create_experiment("kept")
    before = db.read_bytes()
    assert not seed_sqlite_store(f"sqlite:///{db}")
    assert db.read_bytes() == before
    assert not seed_sqlite_store("http://127.0.0.1:5000")  # a server is not a file


def test_a_cache_that_cannot_be_written_leaves_it_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    db = tmp_path / "store" / "mlflow.db"
    assert not seed_sqlite_store(f"sqlite:///{db}")
    assert not db.exists()
    db.parent.mkdir()
    assert [e.name for e in MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()] == ["Default"]
