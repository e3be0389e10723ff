"""Where a run came from: the tags that bring any MLflow run of the pipeline back.

Every run (the pipeline's parent run and each stage's run: ``ncsn.tracking.parent_run``,
``ncsn.tracking.runs``) is tagged with

* ``dataset`` and ``profile`` -- ``base.dataset`` and ``profile`` of its parameters;
* ``git_commit`` -- ``git rev-parse HEAD`` of the repository, and ``git_dirty`` (``true`` when
  ``git status --porcelain`` lists anything: ``params.yaml`` rewritten by ``-S`` overrides, a
  ``dvc.lock`` not yet committed, an edited source file);
* ``dvc_stage_hash`` (stage runs) -- the key of the stage's inputs, see :func:`stage_hash`;
* ``dvc_exp_name`` and ``dvc_exp_baseline_rev`` under ``dvc exp run`` (DVC's ``DVC_EXP_NAME`` and
  ``DVC_EXP_BASELINE_REV``), so a run is found from its row of ``dvc exp show``.

The stage hash. While a stage's command runs, ``dvc.lock`` still holds the stage's previous
entry, so the hash is computed from what DVC is about to record instead: the stage as DVC
collects it from ``dvc.yaml`` (``Repo.stage.collect``), its deps hashed the way DVC hashes them
(``Stage.save_deps``: md5 of each file, of each folder's listing; DVC's state database caches the
hash of every file by inode and mtime, and ``dvc repro`` has just hashed them all to decide to
run the stage, so this takes milliseconds) and the values of its params. That entry, serialised
as in ``dvc.lock`` (``cmd``, ``deps``, ``params``, and ``outs`` reduced to their paths), is hashed
with DVC's ``dict_sha256`` leaving out sizes and file counts: the key under which DVC's run cache
files a stage. After the stage, :func:`lock_hashes` computes the same key from the stage's new
``dvc.lock`` entry, and it is equal; the same inputs give the same key in any clone, whichever
of ``ncsn pipeline``, the Prefect flow, ``dvc repro`` or ``dvc exp run`` started the stage (each
of them runs ``ncsn <stage>`` through DVC, which opens the stage's run and sets ``DVC_STAGE``).
A stage command run by hand (no ``DVC_STAGE``: DVC writes no ``dvc.lock`` entry for it) gets
no ``dvc_stage_hash``, nor does one outside a DVC repository. The parent run
gets ``dvc_lock_hash`` once the pipeline ends: one sha256 over every stage's key in ``dvc.lock``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK = "dvc.lock"


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(root: str | Path) -> dict[str, str]:
    """``{"git_commit": HEAD, "git_dirty": "true"|"false"}`` of the git repository at ``root``.

    Both values are ``unknown`` outside a git repository (or without ``git``).
    """
    commit = _git(Path(root), "rev-parse", "HEAD")
    status = _git(Path(root), "status", "--porcelain") if commit else None
    if commit is None or status is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": "true" if status else "false"}


def dvc_root(start: str | Path | None = None) -> Path | None:
    """The DVC repository holding ``start`` (default: the working directory), or None."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Path(Repo.find_root(str(start or Path.cwd())))
    except NotDvcRepoError:
        return None


def entry_hash(entry: dict[str, Any]) -> str:
    """The key of one stage's ``dvc.lock`` entry: DVC's run-cache key.

    ``dict_sha256`` of ``cmd``, ``deps`` (path and hash), ``params`` (values) and ``outs``
    reduced to their paths; sizes and file counts are left out, as DVC does.

    :param entry: a stage's entry as in ``dvc.lock`` (``{"cmd": ..., "deps": [...], ...}``).
    """
    from dvc.utils import dict_sha256
    from dvc_data.hashfile.meta import Meta

    key = {k: v for k, v in entry.items() if k != "outs"}
    if "outs" in entry:
        key["outs"] = [out["path"] for out in entry["outs"]]
    return dict_sha256(key, exclude=[Meta.PARAM_SIZE, Meta.PARAM_NFILES])


def stage_entry(root: str | Path, stage: str) -> dict[str, Any] | None:
    """The ``dvc.lock`` entry that DVC would write for ``stage`` now, without the outs' hashes.

    :param stage: the stage's name in ``root/dvc.yaml`` (or ``path/to/dvc.yaml:name``).
    :return: ``{"cmd", "deps", "params", "outs": [{"path": ...}]}``, or None when the stage
        is not defined or a dep is missing.
    """
    import copy

    from dvc.repo import Repo
    from dvc.stage.serialize import to_single_stage_lockfile

    target = stage if ":" in stage else f"{Path(root).resolve() / 'dvc.yaml'}:{stage}"
    with Repo(str(root)) as repo:
        try:
            (collected,) = repo.stage.collect(target)
        except Exception as err:  # noqa: BLE001  (no such stage, a dvc.yaml DVC refuses)
            log.debug("no DVC stage %r in %s: %s", stage, root, err)
            return None
        if not getattr(collected, "cmd", None):
            return None
        try:
            collected.save_deps()
        except Exception as err:  # noqa: BLE001  (a dep missing: DVC would not run the stage)
            log.debug("cannot hash the deps of %r: %s", stage, err)
            return None
        inputs = copy.copy(collected)
        inputs.outs = []
        entry = dict(to_single_stage_lockfile(inputs))
        entry["outs"] = [{"path": out.def_path} for out in sorted(collected.outs, key=lambda o: o.def_path)]
    return json.loads(json.dumps(entry))  # plain dicts and lists, as read back from dvc.lock


def stage_hash(root: str | Path, stage: str) -> str | None:
    """:func:`entry_hash` of :func:`stage_entry`: the key of the inputs the stage runs on now."""
    entry = stage_entry(root, stage)
    return entry_hash(entry) if entry is not None else None


def lock_hashes(root: str | Path) -> dict[str, str]:
    """``{stage: key}`` for every stage entry of ``root/dvc.lock`` ({} when there is none)."""
    from dvc.utils.serialize import parse_yaml

    path = Path(root) / LOCK
    if not path.is_file():
        return {}
    # DVC's YAML 1.2 reader, as DVC reads it: PyYAML would read a float such as 2e-05 as a string
    stages = (parse_yaml(path.read_text(encoding="utf-8"), str(path)) or {}).get("stages", {})
    return {name: entry_hash(entry) for name, entry in stages.items()}


def lock_hash(root: str | Path) -> str | None:
    """One sha256 over every stage's key in ``root/dvc.lock`` (None when it has no stages)."""
    hashes = lock_hashes(root)
    if not hashes:
        return None
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


def run_tags(root: str | Path | None, dataset: str, profile: str, stage: str | None = None) -> dict[str, str]:
    """The provenance tags of one run (see the module docstring); never raises.

    :param root: the repository the run works in (None: found from the working directory).
    :param stage: the stage this run is (None: the parent run). Its ``dvc_stage_hash`` is added
        when DVC runs the command: of the stage at ``$DVC_STAGE``, the address DVC sets for it.
    """
    tags = {"dataset": dataset, "profile": profile}
    for env, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    try:
        root = Path(root) if root is not None else dvc_root()
    except Exception as err:  # noqa: BLE001  (provenance never stops a stage)
        log.warning("cannot find the DVC repository: %s", err)
        root = None
    tags.update(git_state(root if root is not None else Path.cwd()))
    address = os.environ.get("DVC_STAGE")  # set by DVC for the command of the stage it runs
    if stage is not None and root is not None and address:
        try:
            key = stage_hash(root, address)
        except Exception as err:  # noqa: BLE001  (provenance never stops a stage)
            log.warning("cannot compute the dvc stage hash of %r: %s", address, str(err).splitlines()[0] if str(err) else err)
            key = None
        if key:
            tags["dvc_stage_hash"] = key
    return tags
