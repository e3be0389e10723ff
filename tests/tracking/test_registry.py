"""The model registry: versions, the champion alias, crash safety, and safe loading from it.

A tiny real checkpoint (a smoke U-Net on 8x8 images) in an embedded SQLite store per test;
no MLflow server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

from ncsn.storage.checkpoint import FORMAT, CheckpointError, atomic_save
from ncsn.config import Config, config_from_dict
from ncsn.storage.score_model import load_score_model
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.core.sigmas import geometric_sigmas
from ncsn.tracking.runs import stage_run

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from ncsn.tracking import registry  # noqa: E402
from ncsn.tracking.registry import RegistryError, register_and_promote, resolve_model_uri  # noqa: E402

NAME = "ncsn-mnist5k"


@pytest.fixture
def cfg(tmp_path, mlflow_dir) -> Config:
    """Tracking on, into ``tmp_path/mlflow``; MLflow's process-wide URI and env restored afterwards."""
    return config_from_dict({"profile": "smoke", "base": {"dataset": "mnist5k"}, "data": {"image_size": 8},
                             "tracking": {"enabled": True, "register": True, "experiment": "test"},
                             "paths": {"mlflow": str(tmp_path / "mlflow")}})


def _checkpoint(cfg: Config, path: Path, seed: int = 0) -> Path:
    """A real sampling checkpoint of the smoke U-Net (1 channel, 8x8), in our format."""
    torch.manual_seed(seed)
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    net = build_model(**network_args(cfg.model), channels=1, image_size=8, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": seed, "config": cfg.to_dict(), "sigmas": sigmas,
                 "data": {"dataset": cfg.base.dataset, "channels": 1, "image_size": 8},
                 "model": net.state_dict(), "ema": None}, path)
    return path


def _register(cfg: Config, tmp_path: Path, fid: float, seed: int, key: str = "classifier_fid") -> dict:
    with stage_run(cfg, "evaluate") as tracker:
        return register_and_promote(cfg, tracker, _checkpoint(cfg, tmp_path / f"model{seed}.pt", seed),
                                    {key: fid, "n_samples": 32, "extractor": "ncsn-digit-classifier"})


def _version_folder(name: str, version: str) -> Path:
    uri = MlflowClient().get_model_version_download_uri(name, version)
    return Path(unquote(urlparse(uri).path))


class _Exploit:
    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_champion_moves_only_to_a_better_fid(cfg, tmp_path):
    first = _register(cfg, tmp_path, 10.0, seed=1)
    assert first == {"name": NAME, "version": "1", "promoted": True, "champion_version": "1",
                     "reason": "first champion"}
    worse = _register(cfg, tmp_path, 12.0, seed=2)
    assert (worse["version"], worse["promoted"], worse["champion_version"]) == ("2", False, "1")
    better = _register(cfg, tmp_path, 8.0, seed=3)
    assert (better["version"], better["promoted"], better["champion_version"]) == ("3", True, "3")
    other_kind = _register(cfg, tmp_path, 1.0, seed=4, key="fid")  # Inception FID: not comparable
    assert not other_kind["promoted"] and "not comparable" in other_kind["reason"]

    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "3"
    tags = client.get_model_version(NAME, "3").tags
    assert {k: tags[k] for k in ("dataset", "fid_metric", "classifier_fid", "n_samples", "profile")} == {
        "dataset": "mnist5k", "fid_metric": "classifier_fid", "classifier_fid": "8.0", "n_samples": "32",
        "profile": "smoke"}
    assert client.get_model_version(NAME, "4").tags["fid_metric"] == "inception_fid"
    # A proper MLflow Model with our flavour and the score network's signature; no pickled code.
    info = mlflow.models.get_model_info(f"models:/{NAME}/3")
    assert info.flavors["ncsn"]["checkpoint"] == "model.pt" and "python_function" not in info.flavors
    inputs = {s.name: (s.type, s.shape) for s in info.signature.inputs.inputs}
    assert inputs == {"x": (torch.zeros(0).float().numpy().dtype, (-1, 1, 8, 8)),
                      "levels": (torch.zeros(0).long().numpy().dtype, (-1,))}
    assert info.signature.outputs.inputs[0].shape == (-1, 1, 8, 8)


def test_a_version_without_a_fid_is_registered_but_never_champion(cfg, tmp_path):
    with stage_run(cfg, "evaluate") as tracker:  # metrics of an evaluation without a feature extractor
        first = register_and_promote(cfg, tracker, _checkpoint(cfg, tmp_path / "model1.pt", 1),
                                     {"n_samples": 32, "extractor": "none", "nn_pixel_ratio": 1.1})
    assert (first["version"], first["promoted"], first["champion_version"]) == ("1", False, None)
    assert "not a champion candidate" in first["reason"]
    scored = _register(cfg, tmp_path, 10.0, seed=2)
    assert (scored["version"], scored["promoted"], scored["reason"]) == ("2", True, "first champion")
    client = MlflowClient()
    assert client.get_model_version(NAME, "1").tags["fid_metric"] == "none"
    assert client.get_model_version(NAME, "1").description.startswith("no FID")


def test_resolve_model_uri_gives_a_checkpoint_the_loader_reads(cfg, tmp_path, monkeypatch):
    _register(cfg, tmp_path, 10.0, seed=1)
    _register(cfg, tmp_path, 9.0, seed=2)
    path = resolve_model_uri(f"models:/{NAME}@champion", cfg)
    assert path.name == "model.pt" and path.is_relative_to(tmp_path / "mlflow" / "downloads")
    model = load_score_model(path)
    assert model.checkpoint["step"] == 2 and model.shape == (1, 8, 8)
    expected = load_score_model(tmp_path / "model2.pt")
    x, levels = torch.rand(2, 1, 8, 8), torch.tensor([0, 3])
    with torch.no_grad():
        assert torch.equal(model.net(x, levels), expected.net(x, levels))
    assert load_score_model(resolve_model_uri(f"models:/{NAME}/1", cfg)).checkpoint["step"] == 1
    assert resolve_model_uri(str(tmp_path / "model1.pt")) == tmp_path / "model1.pt"  # paths pass through
    monkeypatch.chdir(tmp_path)  # without cfg: the store MLflow is set to, downloads under the default paths
    assert resolve_model_uri(f"models:/{NAME}/2") == tmp_path / "outputs/mlflow/downloads" / NAME / "v2/model.pt"

    with pytest.raises(RegistryError, match=f"no registered model 'ncsn-cifar10'; registered: {NAME}"):
        resolve_model_uri("models:/ncsn-cifar10@champion", cfg)
    with pytest.raises(RegistryError, match=r"no alias 'best'; aliases: @champion \(v2\)"):
        resolve_model_uri(f"models:/{NAME}@best", cfg)
    with pytest.raises(RegistryError, match="no version 7; versions: 1, 2"):
        resolve_model_uri(f"models:/{NAME}/7", cfg)


def test_a_malicious_pickle_is_refused_everywhere(cfg, tmp_path):
    _Exploit.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": _Exploit()}, evil)
    # The loader reads with weights_only=True: refused, nothing runs.
    with pytest.raises(CheckpointError, match="refused"):
        load_score_model(evil)
    # It is never registered either.
    with stage_run(cfg, "evaluate") as tracker:
        with pytest.raises(CheckpointError):
            register_and_promote(cfg, tracker, evil, {"classifier_fid": 1.0})
    # Swapped in for a registered model.pt: the recorded SHA-256 no longer matches.
    _register(cfg, tmp_path, 10.0, seed=1)
    shutil.copyfile(evil, _version_folder(NAME, "1") / "model.pt")
    with pytest.raises(RegistryError, match="modified"):
        resolve_model_uri(f"models:/{NAME}@champion", cfg)
    assert not _Exploit.marker.exists()


def test_a_version_without_files_is_never_champion(cfg, tmp_path, monkeypatch):
    _register(cfg, tmp_path, 10.0, seed=1)
    wait_ready = registry._wait_ready

    def files_vanish(client, name, version):  # the artifact store loses the new version's files
        status = wait_ready(client, name, version)
        shutil.rmtree(_version_folder(name, version))
        return status

    monkeypatch.setattr(registry, "_wait_ready", files_vanish)
    lost = _register(cfg, tmp_path, 1.0, seed=2)
    assert not lost["promoted"] and lost["champion_version"] == "1" and "missing" in lost["reason"]
    monkeypatch.setattr(registry, "_wait_ready", wait_ready)
    # When the champion's own files go missing, a verified newcomer replaces it whatever its FID.
    shutil.rmtree(_version_folder(NAME, "1"))
    with pytest.raises(RegistryError, match="missing|cannot be downloaded"):
        resolve_model_uri(f"models:/{NAME}@champion", cfg)
    replacement = _register(cfg, tmp_path, 50.0, seed=3)
    assert replacement["promoted"] and "champion v1 is unusable" in replacement["reason"]


def test_a_registration_killed_midway_leaves_the_champion_alone(cfg, tmp_path, monkeypatch):
    _register(cfg, tmp_path, 10.0, seed=1)

    def killed(client, name, version):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "_wait_ready", killed)
    with pytest.raises(KeyboardInterrupt):
        _register(cfg, tmp_path, 1.0, seed=2)
    client = MlflowClient()
    assert client.get_model_version(NAME, "2")  # the version was created...
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"  # ...but not promoted
    assert load_score_model(resolve_model_uri(f"models:/{NAME}@champion", cfg)).checkpoint["step"] == 1


def test_nothing_is_registered_when_registration_is_off(cfg, tmp_path):
    import dataclasses

    off = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, register=False))
    result = _register(off, tmp_path, 1.0, seed=1)
    assert result["version"] is None and not result["promoted"]
    assert MlflowClient().search_registered_models() == []
