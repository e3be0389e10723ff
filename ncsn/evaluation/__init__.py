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

# The FIDs the evaluate stage can write, one per feature space, with the prefix of that space's
# metric keys (``classifier_is``, ``raw_kid_mean``, ...) and the registry's name for the kind.
# Only FIDs of the same kind compare.
FID_KINDS = {
    "classifier_fid": {"prefix": "classifier_", "extractor": "classifier", "kind": "classifier_fid"},
    "fid": {"prefix": "", "extractor": "Inception", "kind": "inception_fid"},
    "ssl_fid": {"prefix": "ssl_", "extractor": "ssl", "kind": "ssl_fid"},
    "raw_fid": {"prefix": "raw_", "extractor": "raw", "kind": "raw_fid"},
}


class EvaluationError(RuntimeError):
    """A user-fixable evaluation problem (missing weights, missing inputs, bad settings).

    The message says what is missing and how to fix it; the ``ncsn`` command prints it
    on one line and exits with status 2.
    """


__all__ = ["FID_KINDS", "EvaluationError"]
