"""The evaluate stage's memorisation check: nearest training images of the samples.

Distances from each sample to its nearest training image, against the same statistic for
held-out images (``ncsn.evaluation.memorisation``), in pixel space and, for images the
classifier stage's network fits, in its feature space (``classifier``, or ``ssl`` for the
self-supervised encoder); with a picture of the neighbours.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ncsn.evaluation import EvaluationError
from ncsn.evaluation.classifier import load_classifier, predict
from ncsn.evaluation.memorisation import (distance_stats, nearest_neighbours, save_neighbours_image,
                                          save_neighbours_scatter)

log = logging.getLogger(__name__)

MAX_NN_QUERIES = 1000  # samples (and test images) whose nearest training image is searched
NN_SHOWN = 4  # neighbours shown per feature space in nearest_neighbours.png


def memorisation_metrics(samples: Tensor, train: Tensor, test: Tensor, classifier_path: Path, *, grid: int,
                         device: torch.device, out_path: Path) -> dict[str, Any]:
    """Nearest-neighbour statistics (``nn_*``) and the picture at ``out_path``.

    :param samples: [N, C, H, W] uint8 images or [N, D] float points.
    :param train: / :param test: the prepared splits, the same kind as ``samples``.
    :param grid: rows of the picture (``evaluate.nn_grid``, at most the number of queries).
    """
    n_query = min(len(samples), MAX_NN_QUERIES)
    queries, test_q = samples[:n_query], test[:min(len(test), MAX_NN_QUERIES)]
    k = min(NN_SHOWN, len(train))
    grid = min(grid, n_query)
    space = "raw" if samples.ndim == 2 else "pixel"
    d_s, i_s = nearest_neighbours(queries, train, k, device=device)
    d_t, _ = nearest_neighbours(test_q, train, 1, device=device)
    out: dict[str, Any] = {"nn_n_queries": n_query, "nn_n_test": len(test_q), "nn_n_train": len(train)}
    out.update(distance_stats(d_s[:, 0], d_t[:, 0], space))
    if samples.ndim == 2:
        save_neighbours_scatter(queries[:grid], train, i_s[:grid], out_path)
        return out
    groups = [i_s[:grid]]
    try:
        clf = load_classifier(classifier_path, device)
    except EvaluationError as err:  # no labels, or no classifier stage run: pixel space only
        log.info("memorisation check in pixel space only (%s)", err)
        clf = None
    spaces = ["pixel"]
    if clf is not None and clf.spec.channels == samples.shape[1] and clf.spec.image_size == samples.shape[-1]:
        feature_space = "ssl" if clf.objective == "simclr" else "classifier"
        f_train, f_q, f_t = (predict(clf, x)[1] for x in (train, queries, test_q))
        fd_s, fi_s = nearest_neighbours(f_q, f_train, k, device=device)
        fd_t, _ = nearest_neighbours(f_t, f_train, 1, device=device)
        out.update(distance_stats(fd_s[:, 0], fd_t[:, 0], feature_space))
        groups.append(fi_s[:grid])
        spaces.append(feature_space)
    save_neighbours_image(queries[:grid], train, groups, out_path)
    out["nn_image_columns"] = "sample | " + " | ".join(f"{k} nearest training images in {name} space" for name in spaces)
    return out
