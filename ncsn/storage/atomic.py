"""Atomic file writes: readers see the old file or the whole new one, never a part.

Every output of the pipeline (checkpoints, prepared data, sample shards, metrics,
pictures, the report) is written through :func:`atomic_write`: a temporary file in the
same folder, flushed and fsynced, made ``0644`` and moved over the target with
``os.replace``. On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it to ``path``.

    :param write: writes the whole content into the binary file it is given.
    :raises OSError: when the folder cannot be created or written (or whatever ``write``
        raises; ``torch.save`` reports a failed write as a ``RuntimeError``, see
        :func:`os_error_in`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``, if any: itself, or one in its chain of causes.

    ``torch.save`` reports a failed write (full disk, file size limit) as a ``RuntimeError``
    from its zip writer, raised while handling the ``OSError``.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class OutputError(Exception):
    """An output location that cannot be written (found before any work starts)."""


def check_writable(folder: str | Path, what: str, named: str | Path | None = None) -> Path:
    """Check that files can be made in ``folder``: create it if needed, write and remove an empty file,
    then remove the folders it created.

    :param what: how the error names the location to the user (e.g. ``"--out"``, ``"paths.sample"``).
    :param named: the path the error shows (default ``folder``), e.g. the file the user asked for in it.
    :raises OutputError: one line naming ``what``, the folder and the reason.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ncsn-write-check-"):
            pass
    except OSError as err:
        raise OutputError(f"cannot write {named or folder} ({what}): {err.strerror or err}; "
                          "choose a folder you can write") from None
    finally:
        for path in created:  # leave no trace: the stage makes its folders when it writes
            try:
                path.rmdir()
            except OSError:
                break
    return folder
