"""No run left RUNNING: each run names the process that owns it, and a dead owner's runs get closed.

Every run is tagged with :data:`HOST_TAG` (this machine's name) and :data:`PID_TAG`
(``PID:START``, the process id and its start time in clock ticks since boot, so a reused pid
is not taken for the owner). A process that ends normally, on an exception, on Ctrl-C (SIGINT)
or on SIGTERM ends its runs itself (``ncsn.tracking.runs``); one killed outright (SIGKILL, the
OOM killer, a power cut) cannot. :func:`close_orphans` closes those: runs still RUNNING in an
experiment whose owner ran on this machine and is gone are ended ``KILLED`` with the tag
:data:`CLOSED_TAG` saying why. ``ncsn pipeline`` calls it when it starts.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

log = logging.getLogger(__name__)

HOST_TAG = "ncsn.host"
PID_TAG = "ncsn.pid"
CLOSED_TAG = "ncsn.tracking.closed"


def _start_ticks(pid: int) -> str:
    """The start time of process ``pid`` (field 22 of ``/proc/PID/stat``), or "" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """``{HOST_TAG: host, PID_TAG: "PID:START"}`` of this process."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: f"{pid}:{_start_ticks(pid)}"}


def owner_alive(pid_tag: str) -> bool:
    """Whether the process named by a :data:`PID_TAG` value (on this machine) still runs."""
    pid_text, _, start = pid_tag.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # unreadable tag, or a process of another user: leave it alone
    return not start or not _start_ticks(pid) or _start_ticks(pid) == start


def close_orphans(client, experiment_ids: list[str]) -> int:
    """End ``KILLED`` the RUNNING runs of ``experiment_ids`` whose owner on this machine is gone.

    :return: how many runs were closed.
    """
    if not experiment_ids:
        return 0
    host = socket.gethostname()
    runs = client.search_runs(experiment_ids, f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
                              max_results=1000)
    closed = 0
    for run in runs:
        pid_tag = run.data.tags.get(PID_TAG, "")
        if not pid_tag or owner_alive(pid_tag):
            continue
        client.set_tag(run.info.run_id, CLOSED_TAG, f"its process {pid_tag.split(':')[0]} on {host} was gone")
        client.set_terminated(run.info.run_id, "KILLED")
        closed += 1
    if closed:
        log.warning("closed %d run(s) left RUNNING by processes that are gone (status KILLED)", closed)
    return closed
