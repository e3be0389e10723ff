"""Registry URIs to local files: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> a checked ``model.pt``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ncsn.config import Config, PathsConfig
from ncsn.tracking.registered_model import MODEL_FILE, RegistryError, checked_copy
from ncsn.tracking.store import connect, quiet_mlflow


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


def resolve_model_uri(uri: str | Path, cfg: Config | None = None) -> Path:
    """A local checkpoint path for ``uri``: a file path as is, a registry URI downloaded.

    ``models:/ncsn-mnist5k@champion`` or ``models:/ncsn-mnist5k/3``: the version's files are
    downloaded once into ``<paths.mlflow>/downloads/<name>/v<version>/`` and the SHA-256 recorded
    at registration is checked. The store is the one of ``cfg`` (``$MLFLOW_TRACKING_URI`` or the
    embedded SQLite database); without ``cfg``, the one MLflow is set to, else the default paths.

    :return: the path of our ``model.pt``, for ``ncsn.storage.score_model.load_score_model``.
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

        store = mlflow.get_tracking_uri() if is_tracking_uri_set() else connect(Config.defaults())
        root = Path(PathsConfig.defaults().mlflow)
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=store)
    mv = _version_of(client, name, alias, version)
    expected = mv.tags.get("checkpoint_sha256")
    target = root / "downloads" / name / f"v{mv.version}"
    cached = checked_copy(target, expected)
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
        if len(found) != 1 or checked_copy(found[0], None) is None:
            raise RegistryError(f"files of {name} v{mv.version} are missing (no MLmodel with {MODEL_FILE})")
        if checked_copy(found[0], expected) is None:
            raise RegistryError(f"{MODEL_FILE} of {name} v{mv.version} does not match the SHA-256 recorded at"
                                " registration: it was modified; refusing to use it")
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(found[0], target)
        except OSError:  # another process put it there meanwhile
            if checked_copy(target, expected) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (target / MODEL_FILE).resolve()
