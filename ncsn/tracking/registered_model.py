"""One registered version's files: an MLflow Model directory around our checkpoint, and its checks.

What is registered. A version of ``ncsn-<dataset>`` (``ncsn.tracking.registry``) is an MLflow Model directory::

    MLmodel       flavour "ncsn" -> model.pt (format, SHA-256, size, loader) and the signature:
                  inputs x [-1, C, H, W] float32 and levels [-1] int64 -> score [-1, C, H, W] float32
    model.pt      our checkpoint: state dicts (with the sigmas) + config (ncsn.storage.checkpoint), nothing else
    config.yaml   the configuration the network was trained with (secrets redacted)

Why not ``mlflow.pytorch`` or ``pyfunc``. Those flavours pickle the model object (``torch.save``
of the module, cloudpickled Python code), so loading a registered model would run whatever
code the file holds. Our checkpoint is tensors and plain data: ``ncsn.storage.score_model.load_score_model``
reads it with ``torch.load(weights_only=True)`` and rebuilds the network from *our* source and
the stored config, so a tampered file is refused instead of executed. A custom flavour keeps the
registry's benefits (versions, aliases, lineage to the run, a signature for readers) without
that risk. The SHA-256 recorded at registration is checked again at download.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from ncsn.storage.checkpoint import FORMAT, checkpoint_sigmas, file_sha256
from ncsn.tracking.redaction import redact

FLAVOR = "ncsn"
MODEL_FILE = "model.pt"
ARTIFACT_PATH = "registered_model"
LOADER = "ncsn.storage.score_model.load_score_model"


class RegistryError(RuntimeError):
    """A user error with the registry: unknown model, version or alias, or files that do not check out."""


def model_name(dataset: str) -> str:
    """``ncsn-<dataset>``: the registered model of one dataset."""
    return f"ncsn-{dataset}"


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
                  metadata={"dataset": data["dataset"], "step": int(ckpt["step"]), "num_levels": len(checkpoint_sigmas(ckpt)),
                            "arch": ckpt["config"]["model"]["arch"]})
    model.add_flavor(FLAVOR, checkpoint=MODEL_FILE, format=FORMAT, loader=LOADER, config="config.yaml",
                     sha256=file_sha256(out_dir / MODEL_FILE), size=(out_dir / MODEL_FILE).stat().st_size)
    model.save(str(out_dir / "MLmodel"))
    return out_dir


def files_problem(client, name: str, version: str) -> str | None:
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


def checked_copy(folder: Path, expected_sha256: str | None) -> Path | None:
    """``folder/model.pt`` when it is there and (if a hash is recorded) has that hash."""
    path = folder / MODEL_FILE
    if path.is_file() and (folder / "MLmodel").is_file() and expected_sha256 in (None, file_sha256(path)):
        return path
    return None
