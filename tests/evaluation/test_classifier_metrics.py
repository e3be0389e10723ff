"""The digit classifier and its metrics: accuracy, determinism, known answers for classifier-IS,
FID and KID on real digits and on noise, and the class balance of samples."""

from __future__ import annotations

import math

import torch

from ncsn.config import config_from_dict
from ncsn.evaluation.classifier import load_classifier, train_classifier
from ncsn.evaluation.extractor import Extractor
from ncsn.evaluation.fidelity import fidelity_metrics
from tests.evaluation.support import MEASURED


def test_classifier_accuracy_and_safe_file(classifier: Extractor) -> None:
    payload = torch.load(classifier.weights_path, weights_only=True)  # plain data only
    assert payload["format"] == "ncsn-classifier/1" and payload["config"]["num_classes"] == 10
    assert payload["test_accuracy"] >= 0.97  # cpu profile: 600 steps at batch 128
    assert not load_classifier(classifier.weights_path).training


def test_classifier_training_is_deterministic(digits) -> None:
    cfg = config_from_dict({"profile": "smoke", "classifier": {"n_iters": 5, "batch_size": 16}}).classifier
    a, b = (train_classifier(digits["train"][:200], digits["train_labels"][:200], cfg, seed=3, progress=False)
            for _ in range(2))
    c = train_classifier(digits["train"][:200], digits["train_labels"][:200], cfg, seed=4, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_classifier_inception_score_known_answers(classifier: Extractor, digits, noise) -> None:
    real = fidelity_metrics(digits["test"], None, classifier, fid=False, kid=False)
    rand = fidelity_metrics(noise, None, classifier, fid=False, kid=False)
    MEASURED.update({"classifier_is_test": real["classifier_is"], "classifier_is_noise": rand["classifier_is"]})
    assert set(real) == {"classifier_is", "classifier_is_std", "classifier_is_splits"}  # never a bare "is"
    assert real["classifier_is"] >= 8.0  # 10 balanced, confidently classified classes
    assert rand["classifier_is"] < 1.5  # noise: one arbitrary class, whatever the image


def test_classifier_fid_kid_known_answers(classifier: Extractor, digits, noise) -> None:
    train, test = digits["train"][:1000], digits["test"]
    same = fidelity_metrics(test, test, classifier, isc=False, kid_subset_size=100, prc=True)
    floor = fidelity_metrics(train, test, classifier, isc=False, kid_subset_size=100)
    far = fidelity_metrics(noise, test, classifier, isc=False, kid_subset_size=100)
    for name, out in (("test_test", same), ("train_test", floor), ("noise_test", far)):
        MEASURED[f"classifier_fid_{name}"] = out["classifier_fid"]
        MEASURED[f"classifier_kid_{name}"] = out["classifier_kid_mean"]
    assert "fid" not in same and "kid_mean" not in same
    assert abs(same["classifier_fid"]) < 1e-6
    assert same["classifier_precision"] == 1.0 and same["classifier_recall"] == 1.0
    assert 0.0 < floor["classifier_fid"] < 0.01 * far["classifier_fid"]
    assert far["classifier_fid"] > 100.0
    # KID is unbiased: ~0 (within its spread) for equal distributions, large for noise.
    assert abs(same["classifier_kid_mean"]) < 3 * same["classifier_kid_std"] + 1e-9
    assert far["classifier_kid_mean"] > 100 * max(abs(floor["classifier_kid_mean"]), floor["classifier_kid_std"])


def test_kid_subset_shrinks_to_small_sets(classifier: Extractor, digits) -> None:
    out = fidelity_metrics(digits["train"][:20], digits["test"][:30], classifier, kid_subset_size=1000)
    assert out["classifier_kid_subset_size"] == 20.0 and math.isfinite(out["classifier_kid_mean"])


def test_share_ratios_known_answer() -> None:
    from ncsn.evaluation.class_balance import share_ratios

    data = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # 4 classes, 1/4 each
    samples = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])  # class 0 doubled, class 3 missing
    out = share_ratios(samples, data, 4)
    assert [out[f"class_share_{k}"] for k in range(4)] == [0.5, 0.25, 0.25, 0.0]
    assert [out[f"class_share_ratio_{k}"] for k in range(4)] == [2.0, 1.0, 1.0, 0.0]
    assert (out["class_share_ratio_min"], out["class_share_ratio_max"]) == (0.0, 2.0)
    assert "class_share_ratio_1" not in share_ratios(samples, torch.tensor([0, 2, 3]), 4)  # absent from the data


def test_class_balance_of_real_digits_and_of_one_digit(classifier: Extractor, digits) -> None:
    from ncsn.evaluation.class_balance import class_balance_metrics

    real = class_balance_metrics(digits["test"], digits["train_labels"], classifier.weights_path, device=torch.device("cpu"))
    ones = digits["test"][digits["test_labels"] == 1]
    only_ones = class_balance_metrics(ones, digits["train_labels"], classifier.weights_path, device=torch.device("cpu"))
    MEASURED.update({"class_ratio_min_test": real["class_share_ratio_min"],
                     "class_ratio_max_test": real["class_share_ratio_max"]})
    assert 0.7 < real["class_share_ratio_min"] <= 1.0 <= real["class_share_ratio_max"] < 1.3
    assert only_ones["class_share_1"] > 0.95 and only_ones["class_share_ratio_min"] < 0.05
    assert class_balance_metrics(digits["test"], None, classifier.weights_path, device=torch.device("cpu")) == {}
