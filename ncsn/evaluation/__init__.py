"""Evaluation: IS / FID / KID through torch-fidelity, checkpoint selection, memorisation check.

Modules, one concept each:

* ``classifier``   a small CNN trained on the dataset's labels (offline feature extractor for MNIST-like data)
* ``extractor``    which feature extractor measures the samples: the classifier, Inception-v3, raw vectors
* ``fidelity``     uint8 images in, metrics out, through ``torch_fidelity.calculate_metrics``
* ``selection``    a fast FID per training snapshot (the paper's checkpoint selection)
* ``memorisation`` nearest training images of samples, against the same statistic for held-out images

Numbers from the classifier are named ``classifier_is``, ``classifier_fid``, ...: they are
**not comparable to Inception numbers** (different network, different feature space).
"""

from __future__ import annotations


class EvaluationError(RuntimeError):
    """A user-fixable evaluation problem (missing weights, missing inputs, bad settings).

    The message says what is missing and how to fix it; the ``ncsn`` command prints it
    on one line and exits with status 2.
    """


__all__ = ["EvaluationError"]
