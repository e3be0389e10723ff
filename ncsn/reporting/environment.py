"""Where and how long: the machine that renders the report, and stage wall times where recorded.

DVC's ``dvc.lock`` stores hashes, not times. Stage wall times come from MLflow (each stage
runs in its own MLflow run: end − start), read only while the report stage's own run is
active (so the tracking URI is the one the tracker set, and nothing new is created), and
from the per-figure timings the ``figures`` stage writes into ``figures.json``.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from ncsn.stages import STAGES  # the stages whose MLflow runs are looked for (run name, or tag "stage")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2 ** 20
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> list[tuple[str, str]]:
    """(name, value) rows describing this machine and its torch build."""
    import torch

    rows = [("CPU", _cpu_model()), ("logical cores", str(os.cpu_count()))]
    if hasattr(os, "sched_getaffinity"):
        rows.append(("cores usable by this process", str(len(os.sched_getaffinity(0)))))
    rows.append(("torch intra-op threads", str(torch.get_num_threads())))
    memory = _memory_gib()
    if memory is not None:
        rows.append(("memory", f"{memory:.1f} GiB"))
    rows += [("OS", platform.platform()), ("Python", platform.python_version()), ("torch", torch.__version__),
             ("torch built with CUDA", str(torch.version.cuda or "no"))]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append((f"CUDA device {i}", f"{props.name}, {props.total_memory / 2 ** 30:.1f} GiB"))
    else:
        rows.append(("CUDA device", "none"))
    return rows


def git_commit(repo: Path | None = None) -> str | None:
    """The checked-out commit (with ``-dirty`` when files changed), or None outside git."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _stage_of(run: Any) -> str | None:
    tags = run.data.tags
    for key in ("stage", "ncsn.stage"):
        if tags.get(key) in STAGES:
            return tags[key]
    name = run.info.run_name or ""
    for stage in STAGES:
        if name == stage or name.startswith((f"{stage}-", f"{stage}_", f"{stage} ")):
            return stage
    return None


def mlflow_stage_times() -> list[dict[str, Any]]:
    """Wall time of the newest finished MLflow run of each stage, from the active run's experiment.

    Runs that share the active run's parent (one ``ncsn pipeline`` execution) are preferred.
    Returns [] outside an active run or when MLflow cannot answer.

    :return: ``[{"stage", "seconds", "start", "run_id"}]`` in pipeline order.
    """
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        return []
    active = mlflow.active_run()
    if active is None:
        return []
    try:
        client = MlflowClient()
        parent = active.data.tags.get("mlflow.parentRunId")
        query = f"tags.mlflow.parentRunId = '{parent}'" if parent else ""
        runs = client.search_runs([active.info.experiment_id], filter_string=query,
                                  order_by=["attributes.start_time DESC"], max_results=500)
    except Exception:  # noqa: BLE001 - timings are optional; any store problem means "not recorded"
        return []
    newest: dict[str, Any] = {}
    for run in runs:
        stage = _stage_of(run)
        if stage is None or stage in newest or run.info.status != "FINISHED" or not run.info.end_time:
            continue
        newest[stage] = run
    from datetime import datetime, timezone

    return [{"stage": s, "seconds": (r.info.end_time - r.info.start_time) / 1000,
             "start": datetime.fromtimestamp(r.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
             "run_id": r.info.run_id}
            for s in STAGES if (r := newest.get(s)) is not None]
