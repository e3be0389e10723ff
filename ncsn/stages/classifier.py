"""Train the offline feature extractor: a classifier on the labels, or a self-supervised encoder.

Writes into ``paths.classifier``::

    classifier.pt    state dict + shape + objective + test accuracy (loads with weights_only=True)
    metrics.json     test accuracy and the data it was measured on

Labelled images train the classifier (classifier-IS/FID/KID). Images without labels (a folder,
CelebA) train the same network with SimCLR's objective (``ncsn.evaluation.ssl_encoder``):
``ssl_fid`` when Inception's weights are absent. Vector data get a ``classifier.pt`` that
records why no network exists.
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

    if train.data.ndim != 4:
        reason = f"dataset {dataset!r} holds vectors, not images"
        save_untrained_marker(out_dir / "classifier.pt", dataset=dataset, reason=reason)
        write_json(out_dir / "metrics.json", {"trained": False, "reason": reason})
        tracker.set_tags({"classifier": "none"})
        print(f"no classifier: {reason}; wrote {out_dir / 'classifier.pt'}")
        return
    device = resolve_device(cfg.base.device)
    if train.labels is None:
        _train_ssl_encoder(cfg, tracker, train.data, out_dir, device)
        return

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


def _train_ssl_encoder(cfg: Config, tracker, images, out_dir: Path, device) -> None:
    """Images without labels: the SimCLR encoder, written as ``classifier.pt`` (objective ``simclr``)."""
    import time

    from ncsn.evaluation.classifier import save_classifier
    from ncsn.evaluation.ssl_encoder import train_ssl_encoder
    from ncsn.storage.tables import write_json

    start = time.perf_counter()
    model = train_ssl_encoder(images, cfg.classifier, seed=cfg.base.seed, device=device)
    seconds = time.perf_counter() - start
    save_classifier(model, out_dir / "classifier.pt", dataset=cfg.base.dataset, step=cfg.classifier.n_iters,
                    test_accuracy=float("nan"))
    metrics = {"trained": True, "objective": "simclr", "n_train": len(images), "n_iters": cfg.classifier.n_iters}
    write_json(out_dir / "metrics.json", metrics)
    tracker.set_tags({"classifier": "ssl"})
    tracker.log_metrics({"classifier_n_train": len(images), "classifier_train_seconds": seconds})
    tracker.log_artifact(out_dir / "metrics.json", "classifier")
    print(f"dataset {cfg.base.dataset!r} has no class labels: trained a self-supervised encoder (SimCLR) on"
          f" {len(images)} images in {seconds:.1f} s; wrote {out_dir / 'classifier.pt'}")
