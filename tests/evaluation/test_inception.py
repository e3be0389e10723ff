"""The Inception path offline: a stand-in extractor in Inception's place, missing and unsafe weights
files, torch-fidelity's own InceptionV3 from verified weights, and the extractor chosen by dataset."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ncsn.config import Config, config_from_dict
from ncsn.evaluation import EvaluationError
from ncsn.evaluation.extractor import INCEPTION_FILE, Extractor, resolve_extractor
from ncsn.evaluation.fidelity import fidelity_metrics
from tests.evaluation.support import STAND_IN, StandInInception


def _cfg(**evaluate: Any) -> Config:
    return config_from_dict({"profile": "smoke", "base": {"dataset": "cifar10"}, "evaluate": evaluate})


def test_inception_path_with_stand_in(stand_in: Path, digits, noise) -> None:
    ex = resolve_extractor(_cfg(extractor="auto", weights_path=str(stand_in)), vector_data=False)
    assert ex.kind == "inception" and ex.name == STAND_IN and ex.rgb and ex.prefix == ""
    test = digits["test"][:300]
    same = fidelity_metrics(test, test, ex, kid_subset_size=100)
    floor = fidelity_metrics(digits["train"][:300], test, ex, kid_subset_size=100)
    far = fidelity_metrics(noise[:300], test, ex, kid_subset_size=100)
    assert {"is", "fid", "kid_mean"} <= set(same) and not any(k.startswith("classifier_") for k in same)
    assert abs(same["fid"]) < 1e-6 and 0 < floor["fid"] < far["fid"]
    # Grayscale was repeated to RGB, pixels stayed uint8; weights came as an in-memory copy.
    assert StandInInception.seen and all(s == (torch.uint8, (3, 28, 28)) for s in StandInInception.seen)
    assert all(isinstance(a, io.BytesIO) for a in StandInInception.weights_args)
    assert ex.weights_sha256 and len(ex.weights_sha256) == 64


def test_missing_inception_weights_names_path_and_param(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(EvaluationError) as err:
        resolve_extractor(_cfg(extractor="inception"), vector_data=False)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_FILE
    assert str(expected) in str(err.value) and "evaluate.weights_path" in str(err.value)
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(EvaluationError) as err:
        resolve_extractor(_cfg(extractor="inception", weights_path=str(missing)), vector_data=False)
    assert str(missing) in str(err.value) and "evaluate.weights_path" in str(err.value)


CALLED: list[str] = []


def _mark() -> None:
    CALLED.append("code ran")


class _Payload:
    def __reduce__(self):
        return (_mark, ())


def test_unsafe_inception_weights_are_refused_not_run(tmp_path: Path) -> None:
    path = tmp_path / INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(2), "evil": _Payload()}, path)
    with pytest.raises(EvaluationError, match="refused"):
        resolve_extractor(_cfg(extractor="inception", weights_path=str(path)), vector_data=False)
    assert CALLED == []


def test_real_inception_class_accepts_verified_weights(tmp_path: Path) -> None:
    """torch-fidelity's own InceptionV3 (random weights) runs from our in-memory copy."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    path = tmp_path / "random_inception.pth"
    torch.save(Skeleton("skeleton", ["2048"], feature_extractor_weights_path=empty).state_dict(), path)
    ex = resolve_extractor(_cfg(extractor="inception", weights_path=str(path)), vector_data=False)
    assert ex.name == "inception-v3-compat"
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cache = tmp_path / "cache"  # the second input is the same tensor: its features come from the cache
    out = fidelity_metrics(images, images, ex, kid=False, cache_dir=cache)
    assert any(cache.iterdir())
    assert set(out) == {"is", "is_std", "is_splits", "fid"} and math.isfinite(out["fid"])


def test_extractor_choice_by_dataset(classifier: Extractor, tmp_path: Path) -> None:
    digits_cfg = config_from_dict({"profile": "smoke"})
    chosen = resolve_extractor(digits_cfg, vector_data=False, classifier_path=classifier.weights_path)
    assert chosen.kind == "classifier" and chosen.prefix == "classifier_"
    assert resolve_extractor(config_from_dict({"profile": "smoke", "base": {"dataset": "gmm"}}),
                             vector_data=True).kind == "raw"
    with pytest.raises(EvaluationError, match="dvc repro classifier"):
        resolve_extractor(digits_cfg, vector_data=False, classifier_path=tmp_path / "absent.pt")
