"""The MLflow model registry: one registered model per dataset, and a ``champion`` alias.

What is registered. The trained network of dataset ``D`` is registered as ``ncsn-D`` (e.g.
``ncsn-mnist5k``); each evaluation adds a version. A version is an MLflow Model directory::

    MLmodel       flavour "ncsn" -> model.pt (format, SHA-256, size, loader) and the signature:
                  inputs x [-1, C, H, W] float32 and levels [-1] int64 -> score [-1, C, H, W] float32
    model.pt      our checkpoint: state dicts + sigmas + config (ncsn.checkpoint), nothing else
    config.yaml   the configuration the network was trained with (secrets redacted)

Why not ``mlflow.pytorch`` or ``pyfunc``. Those flavours pickle the model object (``torch.save``
of the module, cloudpickled Python code), so loading a registered model would run whatever
code the file holds. Our checkpoint is tensors and plain data: ``ncsn.generate.load_score_model``
reads it with ``torch.load(weights_only=True)`` and rebuilds the network from *our* source and
the stored config, so a tampered file is refused instead of executed. A custom flavour keeps the
registry's benefits (versions, aliases, lineage to the run, a signature for readers) without
that risk. The SHA-256 recorded at registration is checked again at download.

Crash safety of ``register_and_promote``. Steps, in order: (1) the checkpoint is loaded safely
(a file that is not a clean ncsn checkpoint is never registered); (2) the model directory is
logged to the run; (3) a version is created, carrying its tags from the start; (4) we wait for
it to be READY; (5) its files are listed in the artifact store and checked (``MLmodel`` and a
``model.pt`` of the recorded size); (6) it is compared with the champion; (7) only then does the
alias move. A process killed at any point leaves the alias on the previous champion (which
passed the same checks); a current champion whose files have gone missing is replaced by a
new verified version whatever its FID.

Promotion rule: lower FID wins, and only FIDs of the same kind (``classifier_fid``,
``inception_fid``, ``raw_fid``: different feature spaces) on the same dataset are compared.
FID also grows as the sample count shrinks, so compare versions evaluated with the same
``sample.n_samples`` (recorded as a tag). To move the alias by hand::

    MlflowClient().set_registered_model_alias("ncsn-mnist5k", "champion", "3")

Sampling from the registry: ``ncsn sample --model models:/ncsn-mnist5k@champion`` (or ``/3``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ncsn.checkpoint import FORMAT, check_compatible, file_sha256, load_checkpoint
from ncsn.config import Config, PathsConfig
from ncsn.redaction import redact
from ncsn.trackers import NullTracker, Tracker
from ncsn.tracking import connect, quiet_mlflow

CHAMPION = "champion"
FLAVOR = "ncsn"
MODEL_FILE = "model.pt"
ARTIFACT_PATH = "registered_model"
LOADER = "ncsn.generate.load_score_model"
# metrics.json key -> FID kind (ncsn.evaluation.extractor: "" = Inception).
FID_KEYS = {"classifier_fid": "classifier_fid", "inception_fid": "inception_fid", "fid": "inception_fid",
            "raw_fid": "raw_fid"}
_READY_TIMEOUT_S = 300.0


class RegistryError(RuntimeError):
    """A user error with the registry: unknown model, version or alias, or files that do not check out."""


def model_name(dataset: str) -> str:
    """``ncsn-<dataset>``: the registered model of one dataset."""
    return f"ncsn-{dataset}"


def fid_of(metrics: dict[str, Any]) -> tuple[str, float]:
    """``(kind, value)`` of the FID in the evaluate stage's metrics.

    :raises RegistryError: when no FID is there.
    """
    for key, kind in FID_KEYS.items():
        if key in metrics:
            return kind, float(metrics[key])
    raise RegistryError(f"no FID in the metrics (looked for {', '.join(FID_KEYS)}); cannot rank the model")


def signature_for(channels: int, image_size: int):
    """The score network's signature: ``(x, levels) -> score``, shaped like ``x``.

    x [-1, C, H, W] float32 (or [-1, D] for vector data), levels [-1] int64.
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    shape = (-1, channels, image_size, image_size) if image_size else (-1, channels)
    inputs = Schema([TensorSpec(np.dtype(np.float32), shape, "x"), TensorSpec(np.dtype(np.int64), (-1,), "levels")])
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), shape, "score")]))


def write_model_dir(checkpoint: Path, ckpt: dict[str, Any], out_dir: Path, run_id: str | None) -> Path:
    """An MLflow Model directory around our checkpoint (see module docstring).

    :param ckpt: the checkpoint, already loaded safely from ``checkpoint``.
    """
    from mlflow.models import Model

    out_dir.mkdir(parents=True)
    shutil.copyfile(checkpoint, out_dir / MODEL_FILE)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(redact("config", ckpt["config"]), sort_keys=False))
    data = ckpt["data"]
    model = Model(artifact_path=ARTIFACT_PATH, run_id=run_id,
                  signature=signature_for(data["channels"], data["image_size"]),
                  metadata={"dataset": data["dataset"], "step": int(ckpt["step"]), "num_levels": len(ckpt["sigmas"]),
                            "arch": ckpt["config"]["model"]["arch"]})
    model.add_flavor(FLAVOR, checkpoint=MODEL_FILE, format=FORMAT, loader=LOADER, config="config.yaml",
                     sha256=file_sha256(out_dir / MODEL_FILE), size=(out_dir / MODEL_FILE).stat().st_size)
    model.save(str(out_dir / "MLmodel"))
    return out_dir


def _files_problem(client, name: str, version: str) -> str | None:
    """None when the version's ``MLmodel`` and ``model.pt`` (of the recorded size) are in the store."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mv = client.get_model_version(name, version)
    try:
        uri = client.get_model_version_download_uri(name, version)
        listed = {Path(f.path).name: f for f in mlflow.artifacts.list_artifacts(artifact_uri=uri)}
    except (MlflowException, OSError) as err:
        return f"files of {name} v{version} cannot be listed ({str(err).splitlines()[0][:200]})"
    missing = [f for f in ("MLmodel", MODEL_FILE) if f not in listed]
    if missing:
        return f"files of {name} v{version} are missing: {', '.join(missing)}"
    expected = mv.tags.get("checkpoint_bytes")
    if expected is not None and listed[MODEL_FILE].file_size not in (None, int(expected)):
        return f"{MODEL_FILE} of {name} v{version} has {listed[MODEL_FILE].file_size} bytes, expected {expected}"
    return None


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
    :raises RegistryError: when ``metrics`` hold no FID.
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
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    client, run_id = MlflowClient(), tracker.run_id
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_model_dir(checkpoint, ckpt, Path(tmp) / ARTIFACT_PATH, run_id)
        client.log_artifacts(run_id, str(model_dir), ARTIFACT_PATH)
    try:
        client.create_registered_model(name, tags={"dataset": cfg.base.dataset},
                                       description=f"NCSN score network trained on {cfg.base.dataset}")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {"dataset": cfg.base.dataset, "fid_metric": kind, kind: repr(fid),
            "n_samples": str(metrics.get("n_samples", "unknown")), "profile": cfg.profile,
            "extractor": str(metrics.get("extractor", "unknown")),
            "checkpoint_sha256": file_sha256(checkpoint), "checkpoint_bytes": str(checkpoint.stat().st_size)}
    source = RunsArtifactRepository.get_underlying_uri(f"runs:/{run_id}/{ARTIFACT_PATH}")
    version = client.create_model_version(name, source, run_id=run_id, tags=tags,
                                          description=f"{kind} = {fid:.4g} (step {ckpt['step']})").version

    champion = _champion(client, name)
    status = _wait_ready(client, name, version)
    problem = f"status {status}" if status != "READY" else _files_problem(client, name, version)
    if problem:
        promoted, reason = False, f"not promotable: {problem}"
    else:
        champion_problem = _files_problem(client, name, champion.version) if champion is not None else None
        promoted, reason = _decide(kind, fid, cfg.base.dataset, champion, champion_problem)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    champion_version = version if promoted else (champion.version if champion is not None else None)
    tracker.set_tags({"ncsn.registered_model": name, "ncsn.model_version": version,
                      "ncsn.champion": str(promoted).lower()})
    return {"name": name, "version": str(version), "promoted": promoted,
            "champion_version": None if champion_version is None else str(champion_version), "reason": reason}


# ----------------------------------------------------------------------------- from the registry


def _parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return name, alias, None
    elif rest.count("/") == 1:
        name, version = rest.split("/")
        if name and version.isdigit():
            return name, None, version
    raise RegistryError(f"cannot read model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION,"
                        " e.g. models:/ncsn-mnist5k@champion")


def _version_of(client, name: str, alias: str | None, version: str | None):
    """The ModelVersion a URI names; errors list what exists."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(f"no registered model {name!r}; registered: {', '.join(names) or 'none'}"
                            " (models are registered by the evaluate stage with tracking.register: true)") from None
    if alias is not None:
        if alias not in (registered.aliases or {}):
            known = ", ".join(f"@{a} (v{v})" for a, v in sorted((registered.aliases or {}).items()))
            raise RegistryError(f"model {name!r} has no alias {alias!r}; aliases: {known or 'none'}")
        version = str(registered.aliases[alias])
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise RegistryError(f"model {name!r} has no version {version}; versions: "
                            f"{', '.join(map(str, versions)) or 'none'}") from None


def _checked_copy(folder: Path, expected_sha256: str | None) -> Path | None:
    """``folder/model.pt`` when it is there and (if a hash is recorded) has that hash."""
    path = folder / MODEL_FILE
    if path.is_file() and (folder / "MLmodel").is_file() and expected_sha256 in (None, file_sha256(path)):
        return path
    return None


def resolve_model_uri(uri: str | Path, cfg: Config | None = None) -> Path:
    """A local checkpoint path for ``uri``: a file path as is, a registry URI downloaded.

    ``models:/ncsn-mnist5k@champion`` or ``models:/ncsn-mnist5k/3``: the version's files are
    downloaded once into ``<paths.mlflow>/downloads/<name>/v<version>/`` and the SHA-256 recorded
    at registration is checked. The store is the one of ``cfg`` (``$MLFLOW_TRACKING_URI`` or the
    embedded SQLite database); without ``cfg``, the one MLflow is set to, else the default paths.

    :return: the path of our ``model.pt``, for ``ncsn.generate.load_score_model``.
    :raises RegistryError: unknown model, alias or version (the message lists what exists),
        missing files, or a checkpoint that changed since registration.
    """
    text = str(uri)
    if not text.startswith("models:/"):
        return Path(text[len("file://"):] if text.startswith("file://") else text)
    name, alias, version = _parse_models_uri(text)
    if cfg is not None:
        store, root = connect(cfg), Path(cfg.paths.mlflow)
    else:
        quiet_mlflow()
        import mlflow
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

        store = mlflow.get_tracking_uri() if is_tracking_uri_set() else connect(Config())
        root = Path(PathsConfig().mlflow)
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=store)
    mv = _version_of(client, name, alias, version)
    expected = mv.tags.get("checkpoint_sha256")
    target = root / "downloads" / name / f"v{mv.version}"
    cached = _checked_copy(target, expected)
    if cached is not None:
        return cached.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".v{mv.version}."))
    try:
        try:
            download_artifacts(artifact_uri=client.get_model_version_download_uri(name, mv.version),
                               dst_path=str(tmp))
        except (MlflowException, OSError) as err:
            raise RegistryError(f"files of {name} v{mv.version} cannot be downloaded"
                                f" ({str(err).splitlines()[0][:200]})") from None
        found = [p.parent for p in tmp.rglob("MLmodel")]
        if len(found) != 1 or _checked_copy(found[0], None) is None:
            raise RegistryError(f"files of {name} v{mv.version} are missing (no MLmodel with {MODEL_FILE})")
        if _checked_copy(found[0], expected) is None:
            raise RegistryError(f"{MODEL_FILE} of {name} v{mv.version} does not match the SHA-256 recorded at"
                                " registration: it was modified; refusing to use it")
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(found[0], target)
        except OSError:  # another process put it there meanwhile
            if _checked_copy(target, expected) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (target / MODEL_FILE).resolve()
