"""Class balance of the samples: each class's share among them, by the digit classifier.

A sampler that cannot carry samples between modes (σ₁ too small for the data, NCSNv2
technique 1) over-produces some classes and starves others. The classifier of the
``classifier`` stage labels every sample; each class's share among the samples is
compared with its share among the training labels::

    class_share_<k>          share of class k among the samples
    class_share_ratio_<k>    that share ÷ class k's share in the training data (1 = as in the data)
    class_share_ratio_min    the smallest of the ratios (the most starved class)
    class_share_ratio_max    the largest (the most over-produced class)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ncsn.evaluation import EvaluationError
from ncsn.evaluation.classifier import load_classifier, predict

log = logging.getLogger(__name__)


def class_shares(labels: Tensor, num_classes: int) -> Tensor:
    """Share of each class among ``labels`` (int64 [N]) → float64 [num_classes], summing to 1."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes)[:num_classes].double()
    return counts / max(len(labels), 1)


def share_ratios(sample_labels: Tensor, data_labels: Tensor, num_classes: int) -> dict[str, float]:
    """The ``class_share_*`` metrics of the module docstring, from predicted and true labels.

    Classes absent from the data get no ratio.
    """
    ours, theirs = class_shares(sample_labels, num_classes), class_shares(data_labels, num_classes)
    out: dict[str, float] = {}
    ratios = []
    for k in range(num_classes):
        out[f"class_share_{k}"] = float(ours[k])
        if theirs[k] > 0:
            ratio = float(ours[k] / theirs[k])
            out[f"class_share_ratio_{k}"] = ratio
            ratios.append(ratio)
    if ratios:
        out["class_share_ratio_min"], out["class_share_ratio_max"] = min(ratios), max(ratios)
    return out


def class_balance_metrics(samples: Tensor, train_labels: Tensor | None, classifier_path: Path, *,
                          device: torch.device) -> dict[str, float]:
    """The ``class_share_*`` metrics for image samples, or {} where they have no meaning.

    :param samples: [N, C, H, W] uint8 images (2-D points get {}).
    :param train_labels: int64 [M] labels of the training split, or None (then {}).
    :param classifier_path: the classifier stage's ``classifier.pt`` (missing or untrained: {}).
    """
    if samples.ndim != 4 or train_labels is None:
        return {}
    try:
        clf = load_classifier(classifier_path, device)
    except EvaluationError as err:
        log.info("no class balance (%s)", err)
        return {}
    if clf.spec.channels != samples.shape[1] or clf.spec.image_size != samples.shape[-1] \
            or clf.objective != "labels":  # a self-supervised encoder has no classes
        return {}
    logits, _ = predict(clf, samples)
    return share_ratios(logits.argmax(1), train_labels, logits.shape[1])
