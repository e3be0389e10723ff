"""Train the image classifier used as an offline feature extractor (classifier-IS/FID/KID).

Writes into ``paths.classifier``::

    classifier.pt    state dict + shape + test accuracy (loads with weights_only=True)
    metrics.json     test accuracy and the data it was measured on

Datasets without labels (CelebA, folders) and vector data get a ``classifier.pt`` that
records why no classifier exists; their evaluation uses Inception (``evaluate.extractor``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ncsn.config import Config

log = logging.getLogger(__name__)

MIN_USEFUL_ACCURACY = 0.9  # below this the classifier's feature space says little about the images


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Train on ``paths.prepare/train.pt``, measure on ``test.pt``, write ``classifier.pt``."""
    from ncsn.data import load_split
    from ncsn.stages.devices import resolve_device
    from ncsn.evaluation.classifier import accuracy, save_classifier, save_untrained_marker, timed_train
    from ncsn.storage.tables import write_json

    out_dir = Path(cfg.paths.classifier)
    train = load_split(cfg.paths.prepare, "train")
    test = load_split(cfg.paths.prepare, "test")
    dataset = cfg.base.dataset

    reason = None
    if train.data.ndim != 4:
        reason = f"dataset {dataset!r} holds vectors, not images"
    elif train.labels is None:
        reason = f"dataset {dataset!r} has no class labels"
    if reason is not None:
        save_untrained_marker(out_dir / "classifier.pt", dataset=dataset, reason=reason)
        write_json(out_dir / "metrics.json", {"trained": False, "reason": reason})
        tracker.set_tags({"classifier": "none"})
        print(f"no classifier: {reason}; wrote {out_dir / 'classifier.pt'}")
        return

    device = resolve_device(cfg.base.device)
    model, seconds = timed_train(train.data, train.labels, cfg.classifier, seed=cfg.base.seed, device=device)
    test_acc = accuracy(model, test.data, test.labels) if test.labels is not None else float("nan")
    train_acc = accuracy(model, train.data[:len(test.data)], train.labels[:len(test.data)])
    save_classifier(model, out_dir / "classifier.pt", dataset=dataset, step=cfg.classifier.n_iters,
                    test_accuracy=test_acc)
    metrics = {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "n_train": len(train),
        "n_test": len(test),
        "n_iters": cfg.classifier.n_iters,
        "num_classes": model.spec.num_classes,
    }
    write_json(out_dir / "metrics.json", metrics)
    if test_acc < MIN_USEFUL_ACCURACY:
        log.warning("classifier test accuracy %.3f < %.2f: metrics in its feature space (classifier_*, nn_classifier_*)"
                    " say little; for digits raise classifier.n_iters", test_acc, MIN_USEFUL_ACCURACY)
    tracker.log_metrics({**{f"classifier_{k}": float(v) for k, v in metrics.items()},
                         "classifier_train_seconds": seconds})
    tracker.log_artifact(out_dir / "metrics.json", "classifier")
    print(json.dumps({**metrics, "train_seconds": round(seconds, 1)}, indent=2))
