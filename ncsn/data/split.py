"""Deterministic train/test splits for datasets that come without one (mnist5k, folder, gmm)."""

from __future__ import annotations

import torch
from torch import Tensor

from ncsn.data.errors import DataError

FOLDER_MAX_TEST_FRACTION = 0.2


def folder_test_size(n: int, n_test: int) -> int:
    """Held-out size for an image folder of ``n`` images.

    Rule: ``min(n_test, max(1, ⌊0.2·n⌋))``, i.e. at most a fifth of the images but always
    one, so a folder of 2 images still trains on one and holds out one.

    :raises DataError: when ``n < 2`` (nothing would be left for one of the splits).
    """
    if n < 2:
        raise DataError(f"found {n} readable image(s); a folder needs at least 2 (one to train on, one held out)")
    return min(n_test, max(1, int(FOLDER_MAX_TEST_FRACTION * n)))


def split_indices(n: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random split of ``range(n)``.

    The permutation comes from ``torch.randperm(n)`` with a generator seeded by ``seed``;
    its first ``n_test`` entries are the test set, the rest the training set. Both keep the
    permuted order, so any prefix of either split is a random subset (the mnist5k file is
    sorted by label).

    :param n: number of examples N.
    :param n_test: held-out examples, 1 ≤ n_test < N.
    :param seed: ``data.split_seed``.
    :return: (train indices [N − n_test], test indices [n_test]), int64, disjoint.
    :raises DataError: when ``n_test`` leaves no training or no test example.
    """
    if not 1 <= n_test < n:
        raise DataError(f"data.n_test = {n_test} must be between 1 and {n - 1} for a dataset of {n} examples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_test:], perm[:n_test]
