"""The MLflow model registry: one registered model per dataset, and a ``champion`` alias.

The trained network of dataset ``D`` is registered as ``ncsn-D`` (e.g. ``ncsn-mnist5k``); each
evaluation adds a version, an MLflow Model directory around our checkpoint
(``ncsn.tracking.registered_model``). ``models:/`` URIs are read back by ``ncsn.tracking.model_uri``.

Crash safety of ``register_and_promote``. Steps, in order: (1) the checkpoint is loaded safely
(a file that is not a clean ncsn checkpoint is never registered); (2) the model directory is
logged to the run; (3) a version is created, carrying its tags from the start; (4) we wait for
it to be READY; (5) its files are listed in the artifact store and checked (``MLmodel`` and a
``model.pt`` of the recorded size) and it is tagged ``ncsn.verified``; (6) it is compared with the
champion; (7) only then does the alias move; (8) the alias is settled against versions that other
processes registered at the same time (``ncsn.tracking.champion``). A process killed at any point
leaves the alias on the previous champion (which passed the same checks); a current champion
whose files have gone missing is replaced by a new verified version whatever its FID.

Promotion rule: lower FID wins, and only FIDs of the same kind (``classifier_fid``,
``inception_fid``, ``ssl_fid``, ``raw_fid``: different feature spaces) on the same dataset are
compared. A version evaluated without any feature extractor (``fid_metric`` ``none``) is
registered but never becomes champion.
FID also grows as the sample count shrinks, so compare versions evaluated with the same
``sample.n_samples`` (recorded as a tag). To move the alias by hand::

    MlflowClient().set_registered_model_alias("ncsn-mnist5k", "champion", "3")

Sampling from the registry: ``ncsn sample --model models:/ncsn-mnist5k@champion`` (or ``/3``).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ncsn.config import Config
from ncsn.evaluation import FID_KINDS
from ncsn.storage.checkpoint import check_compatible, file_sha256, load_checkpoint
from ncsn.tracking.champion import CHAMPION, converge_champion, mark_verified, set_champion
from ncsn.tracking.model_uri import resolve_model_uri
from ncsn.tracking.registered_model import ARTIFACT_PATH, RegistryError, files_problem, model_name, write_model_dir
from ncsn.tracking.store import connect
from ncsn.tracking.trackers import NullTracker, Tracker

__all__ = ["CHAMPION", "RegistryError", "fid_of", "model_name", "register_and_promote", "resolve_model_uri"]

_READY_TIMEOUT_S = 300.0


NO_FID = "none"  # the fid_metric of a version evaluated without a feature extractor: never champion


def fid_of(metrics: dict[str, Any]) -> tuple[str, float]:
    """``(kind, value)`` of the FID in the evaluate stage's metrics; ``("none", nan)`` when there is none."""
    for key, fid in FID_KINDS.items():
        if key in metrics:
            return fid["kind"], float(metrics[key])
    return NO_FID, math.nan


def _wait_ready(client, name: str, version: str) -> str:
    """The final status of a new version: READY or FAILED_REGISTRATION (or PENDING after the timeout)."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        status = client.get_model_version(name, version).status
        if status != "PENDING_REGISTRATION" or time.monotonic() > deadline:
            return status
        time.sleep(1.0)


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _decide(new_kind: str, new_fid: float, dataset: str, champion, champion_problem: str | None) -> tuple[bool, str]:
    """Whether the new version becomes champion, and why (one sentence)."""
    if new_kind == NO_FID:
        return False, "no FID (evaluated without a feature extractor): registered, not a champion candidate"
    if not math.isfinite(new_fid):
        return False, f"{new_kind} = {new_fid} is not finite"
    if champion is None:
        return True, "first champion"
    v = champion.version
    if champion_problem:
        return True, f"champion v{v} is unusable ({champion_problem})"
    tags = champion.tags
    if tags.get("dataset") != dataset or tags.get("fid_metric") != new_kind:
        return False, (f"not comparable: champion v{v} was measured with {tags.get('fid_metric')} on"
                       f" {tags.get('dataset')}, this version with {new_kind} on {dataset}; alias unchanged")
    try:
        old_fid = float(tags[new_kind])
    except (KeyError, ValueError):
        return True, f"champion v{v} has no {new_kind} recorded"
    if new_fid < old_fid:
        return True, f"{new_kind} {new_fid:.4g} beats champion v{v} ({old_fid:.4g})"
    return False, f"{new_kind} {new_fid:.4g} does not beat champion v{v} ({old_fid:.4g})"


def register_and_promote(cfg: Config, tracker: Tracker | NullTracker, checkpoint: Path,
                         metrics: dict[str, Any]) -> dict[str, Any]:
    """Register ``checkpoint`` as a new version of ``ncsn-<dataset>``; move ``champion`` if it wins.

    Version tags: ``dataset``, ``fid_metric`` (the kind), ``<kind>`` (its value), ``n_samples``,
    ``profile``, ``extractor``, ``checkpoint_sha256``, ``checkpoint_bytes``. Nothing is registered
    when ``tracking.enabled`` or ``tracking.register`` is false.

    :param tracker: the open run (its ``run_id`` receives the model directory).
    :param metrics: the evaluate stage's metrics (``classifier_fid``, ``fid`` or ``raw_fid``, ``n_samples``).
    :return: ``{"name", "version", "promoted", "champion_version", "reason"}`` (versions as str or None).
    :raises CheckpointError: when ``checkpoint`` is not a clean ncsn checkpoint, or was trained for
        another dataset or architecture than ``cfg``.
    """
    name = model_name(cfg.base.dataset)
    if not (cfg.tracking.enabled and cfg.tracking.register) or tracker.run_id is None:
        return {"name": name, "version": None, "promoted": False, "champion_version": None,
                "reason": "not registered: tracking.enabled or tracking.register is false"}
    kind, fid = fid_of(metrics)
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)  # weights_only: a file that would run code is refused here
    # Never file another dataset's (or another architecture's) network under ncsn-<dataset>.
    check_compatible(ckpt, arch=cfg.model.arch, dataset=cfg.base.dataset, source=checkpoint)
    connect(cfg)
    # On the run's store; in the local store instead if the server is lost meanwhile (the tracker fails over).
    result = tracker.call(lambda client, run_id: _register(client, run_id, cfg, checkpoint, ckpt, kind, fid, metrics))
    tracker.set_tags({"ncsn.tracking.registered_model": result["name"], "ncsn.model_version": result["version"],
                      "ncsn.champion": str(result["promoted"]).lower()})
    return result


def _register(client, run_id: str, cfg: Config, checkpoint: Path, ckpt: dict[str, Any], kind: str, fid: float,
              metrics: dict[str, Any]) -> dict[str, Any]:
    """Steps (2)-(8) of :func:`register_and_promote` in the store of ``client``, for the run ``run_id``."""
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    name = model_name(cfg.base.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_model_dir(checkpoint, ckpt, Path(tmp) / ARTIFACT_PATH, run_id)
        client.log_artifacts(run_id, str(model_dir), ARTIFACT_PATH)
    tags = {"dataset": cfg.base.dataset, "fid_metric": kind, kind: repr(fid),
            "n_samples": str(metrics.get("n_samples", "unknown")), "profile": cfg.profile,
            "extractor": str(metrics.get("extractor", "unknown")),
            "checkpoint_sha256": file_sha256(checkpoint), "checkpoint_bytes": str(checkpoint.stat().st_size)}
    source = RunsArtifactRepository.get_underlying_uri(f"runs:/{run_id}/{ARTIFACT_PATH}")
    scored = f"{kind} = {fid:.4g}" if kind != NO_FID else "no FID (no feature extractor)"
    return register_version(client, name, cfg.base.dataset, source, run_id, tags, f"{scored} (step {ckpt['step']})")


def register_version(client, name: str, dataset: str, source: str, run_id: str, tags: dict[str, str],
                     description: str) -> dict[str, Any]:
    """Steps (3)-(8) of :func:`register_and_promote`: a version of ``name`` from the model directory
    ``source`` of run ``run_id``, checked, then promoted if it wins (also used by ``ncsn tracking sync``).

    :param tags: the version's tags, with ``fid_metric`` and the FID under its kind.
    """
    from mlflow.exceptions import MlflowException

    kind = tags["fid_metric"]
    fid = float(tags[kind])
    try:
        client.create_registered_model(name, tags={"dataset": dataset},
                                       description=f"NCSN score network trained on {dataset}")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, description=description).version

    champion = _champion(client, name)
    status = _wait_ready(client, name, version)
    problem = f"status {status}" if status != "READY" else files_problem(client, name, version)
    if problem:
        promoted, reason = False, f"not promotable: {problem}"
    else:
        mark_verified(client, name, version)
        champion_problem = files_problem(client, name, champion.version) if champion is not None else None
        promoted, reason = _decide(kind, fid, dataset, champion, champion_problem)
    if promoted:
        set_champion(client, name, version)
    champion_version = version if promoted else (champion.version if champion is not None else None)
    # Processes registering at the same time may have moved the alias past each other: settle it.
    settled = converge_champion(client, name, kind, dataset)
    if settled is not None and str(settled) != str(champion_version):
        reason += f"; champion is v{settled} after concurrent registrations"
        promoted, champion_version = str(settled) == str(version), settled
    return {"name": name, "version": str(version), "promoted": promoted,
            "champion_version": None if champion_version is None else str(champion_version), "reason": reason}
