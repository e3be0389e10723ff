"""When the tracking server is down, wrong or dies: bounded waits, one line, and the local store instead.

A run tracked into a server (``MLFLOW_TRACKING_URI=http://...``) must never be the reason that a
result is lost. Three pieces:

* **Bounded retries.** MLflow's own defaults retry a failed request 7 times with a growing backoff
  and wait 120 s for each answer: minutes per call on a dead server. :func:`limit_http_retries`
  lowers them for this process and the stages it starts (unless the environment sets them):
  2 retries, 1 s backoff, a 10 s timeout, so a refused connection costs ~3 s and a hung server
  ~30 s, once per process.
* **Preflight.** :func:`probe` asks the server one cheap question (the experiment by name) with
  no retry and a 3 s timeout, for that call alone: ``None`` when it answers, else the error's one line.
* **Failover.** :func:`unavailable` tells a failed call that means "the server cannot be reached
  now" (refused connection, timeout, a 5xx, a reply that is not MLflow's) from a request that the
  server refused (a 4xx: our bug, raised as before). :func:`switch_to_local` then points this
  process, and the stages it starts, at the embedded store (``sqlite:///<paths.mlflow>/mlflow.db``)
  and prints the one warning line. The runs there carry :data:`FAILOVER_FROM_TAG` (the server they
  were meant for), and ``ncsn tracking sync`` (``ncsn.tracking.sync``) sends them later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from typing import Iterator

log = logging.getLogger(__name__)

FAILOVER_ENV = "NCSN_MLFLOW_FAILOVER_FROM"  # set once this process (and its children) track locally
FAILOVER_FROM_TAG = "ncsn.tracking.failover_from"  # the server a local run was meant for
CONTINUES_TAG = "ncsn.tracking.continues"  # the server run that a local run continues
SERVER_PARENT_TAG = "ncsn.tracking.server_parent"  # a local run's parent, when that is a server run
SYNCED_TAG = "ncsn.tracking.synced_to"  # on a local run once ``ncsn tracking sync`` copied it: "URI RUN_ID"

RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
PROBE_TIMEOUT_S = 3
_CLIENT_ERRORS = range(400, 500)


def limit_http_retries() -> None:
    """Bounded retries and timeouts for MLflow's HTTP calls (see module docstring); the user's values win."""
    for key, value in RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_remote(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (http, https), i.e. something that can be down."""
    return uri.startswith(("http://", "https://"))


def one_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type when it has none), at most 300 characters; for
    a failed connection, the system's reason alone (``[Errno 111] Connection refused``)."""
    text = str(err).strip()
    if (cause := re.search(r"\[Errno -?\d+\] [^'\")]+", text)) is not None:
        return cause.group(0).strip()
    if "timed out" in text:
        return "timed out"
    line = text.splitlines()[0] if text else type(err).__name__
    return line[:300]


@contextlib.contextmanager
def _quick_calls() -> Iterator[None]:
    """No retry and a short timeout, for the calls inside only."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def probe(uri: str, experiment: str = "Default") -> str | None:
    """Ask the server at ``uri`` one cheap question, in at most a few seconds.

    :return: None when it answers as an MLflow server, else the error's one line.
    """
    from mlflow import MlflowClient

    with _quick_calls():
        try:
            MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
        except Exception as err:  # noqa: BLE001 - any failure means "not usable now"
            return one_line(err)
    return None


def unavailable(err: BaseException) -> bool:
    """Whether a failed tracking call means the server cannot be reached now (not a refused request)."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                        TimeoutError)):
        return True
    if isinstance(err, RestException):  # the server answered with an MLflow error
        return err.get_http_status_code() not in _CLIENT_ERRORS
    if isinstance(err, MlflowException):  # "API request to ... failed with exception ...", a non-JSON reply, a 5xx
        return err.get_http_status_code() not in _CLIENT_ERRORS or "API request to" in str(err)
    return isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, PermissionError))


def failed_over() -> str | None:
    """The server this process was meant to track into, once it switched to the local store."""
    return os.environ.get(FAILOVER_ENV) or None


def switch_to_local(server: str, local: str, reason: str, what: str = "this run") -> None:
    """Point this process (and the processes it starts) at the local store ``local``; one warning line.

    The line names the server, the error and where the run goes instead; printed once per process.
    """
    import mlflow

    from ncsn.tracking.store_seed import seed_sqlite_store

    first = failed_over() is None
    seed_sqlite_store(local)
    os.environ["MLFLOW_TRACKING_URI"] = local
    os.environ[FAILOVER_ENV] = server
    mlflow.set_tracking_uri(local)
    if first:
        print(f"ncsn: warning: tracking server {server} unavailable ({reason}); {what} goes on in the local"
              f" store {local} (send it later: ncsn tracking sync)", file=sys.stderr, flush=True)
