"""Fixtures of the evaluation tests: mnist5k's digits, the digit classifier trained once per
session, uniform noise, and the Inception stand-in registered with its weights file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ncsn.config import config_from_dict
from ncsn.evaluation import extractor as extractor_mod
from ncsn.evaluation.classifier import accuracy, save_classifier, train_classifier
from ncsn.evaluation.extractor import CLASSIFIER_NAME, Extractor
from tests.evaluation.support import MEASURED, STAND_IN, StandInInception, one_thread, report_measured


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """mnist5k as the prepare stage splits it: 4,000 train / 1,000 test digits."""
    from ncsn.data import load_split, prepare

    out = tmp_path_factory.mktemp("prepare")
    prepare(config_from_dict({"profile": "smoke"}), out)
    train, test = load_split(out, "train"), load_split(out, "test")
    return {"train": train.data, "train_labels": train.labels, "test": test.data, "test_labels": test.labels}


@pytest.fixture(scope="session")
def classifier(digits: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Extractor:
    """The digit classifier trained with the ``cpu`` profile's settings, as a torch-fidelity extractor."""
    cfg = config_from_dict({"profile": "cpu"}).classifier
    start = time.perf_counter()
    with one_thread():
        model = train_classifier(digits["train"], digits["train_labels"], cfg, seed=0, progress=False)
    MEASURED["classifier_train_seconds"] = time.perf_counter() - start
    acc = accuracy(model, digits["test"], digits["test_labels"])
    MEASURED["classifier_test_accuracy"] = acc
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    save_classifier(model, path, dataset="mnist5k", step=cfg.n_iters, test_accuracy=acc)
    return Extractor("classifier", CLASSIFIER_NAME, "classifier_", rgb=False, has_is=True, weights_path=path)


@pytest.fixture(scope="session")
def noise(digits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Uniform uint8 noise shaped like the test split."""
    return torch.randint(0, 256, digits["test"].shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session", autouse=True)
def _report() -> Iterator[None]:
    yield
    report_measured()


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The stand-in registered in Inception's place, with its weights file; returns the file."""
    if STAND_IN not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(STAND_IN, StandInInception)
    monkeypatch.setattr(extractor_mod, "INCEPTION_NAME", STAND_IN)
    StandInInception.seen.clear()
    StandInInception.weights_args.clear()
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "stand_in.pth"
    torch.save({"proj": torch.randn(3 * 28 * 28, 32, generator=gen), "head": torch.randn(32, 10, generator=gen)}, path)
    return path
