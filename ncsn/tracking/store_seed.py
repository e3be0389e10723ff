"""A new embedded store in milliseconds: a copy of an empty, migrated database, made once per MLflow version.

MLflow creates a new SQLite store by running every schema migration from its first one (about
3 s on two cores), in each new project, test folder and failover. The result depends only on the
versions of MLflow and SQLAlchemy, so :func:`seed_sqlite_store` makes it once, into
``$XDG_CACHE_HOME/ncsn/`` (``~/.cache/ncsn/``), and copies it into place afterwards. MLflow then
opens the copy as its own: same schema revision, and it adds its default experiment (whose
artifact location names the new store) as it does in a database it has just migrated.

Anything unexpected (a private MLflow function gone, a cache folder that cannot be written) leaves
the file absent, and MLflow creates the store as it always does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ncsn`` (default ``~/.cache/ncsn``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ncsn"


def template_path() -> Path:
    """The empty database for the installed MLflow and SQLAlchemy."""
    import mlflow
    import sqlalchemy

    return cache_dir() / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}-empty.db"


def _make_template(path: Path) -> None:
    """Migrate a new database at ``path`` to MLflow's current schema (written beside it, then moved)."""
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        engine = sqlalchemy.create_engine(f"{SQLITE_PREFIX}{tmp}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def seed_sqlite_store(uri: str) -> bool:
    """Put an empty, migrated database at the file of ``uri`` (``sqlite:///PATH``) if there is none.

    Safe against a concurrent creator: the copy is linked into place only where no file exists.

    :return: whether a database was put there.
    """
    if not uri.startswith(SQLITE_PREFIX):
        return False
    db = Path(uri[len(SQLITE_PREFIX):])
    if db.exists():
        return False
    try:
        template = template_path()
        if not template.exists():
            _make_template(template)
        db.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(template, tmp)
            os.chmod(tmp, 0o644)
            os.link(tmp, db)  # fails where another process created the store meanwhile: keep theirs
        finally:
            Path(tmp).unlink(missing_ok=True)
    except Exception as err:  # noqa: BLE001  (MLflow then creates the store itself, as without the seed)
        log.debug("no seeded MLflow store at %s: %s", db, err)
        return False
    return True
