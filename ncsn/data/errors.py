"""The one exception of the data layer."""

from __future__ import annotations


class DataError(RuntimeError):
    """A user-fixable data problem: missing or corrupt files, an empty folder, a bad split.

    The message says which file or folder is at fault and how to fix it; the ``ncsn``
    command prints it on one line and exits with status 2.
    """
