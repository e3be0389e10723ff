"""Checkpoint selection by FID and the memorisation check (nearest neighbours in pixel space)."""

from __future__ import annotations

import math

import torch

from ncsn.evaluation.memorisation import distance_stats, nearest_neighbours
from ncsn.evaluation.selection import SnapshotScore, best_snapshot
from tests.evaluation.support import MEASURED


def test_best_snapshot_is_lowest_finite_fid() -> None:
    scores = [SnapshotScore(100, 50.0, 1.0, ()), SnapshotScore(200, 20.0, 0.9, ()),
              SnapshotScore(300, math.nan, 0.8, ()), SnapshotScore(400, 20.0, 0.8, ())]
    assert best_snapshot(scores).step == 400
    assert best_snapshot(scores[:2]).step == 200


def test_nearest_neighbours_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 256, (300, 1, 6, 6), dtype=torch.uint8, generator=gen)
    queries = torch.cat([ref[:5], torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8, generator=gen)])
    dist, idx = nearest_neighbours(queries, ref, 3, query_batch=7, reference_batch=64)
    brute = torch.cdist(queries.flatten(1).double() / 255, ref.flatten(1).double() / 255)
    expected_d, expected_i = brute.topk(3, dim=1, largest=False)
    assert torch.equal(idx, expected_i) and torch.allclose(dist.double(), expected_d, atol=1e-5)
    assert torch.equal(dist[:5, 0], torch.zeros(5)) and torch.equal(idx[:5, 0], torch.arange(5))


def test_memorisation_statistics_detect_copies(digits) -> None:
    train, test = digits["train"], digits["test"][:300]
    d_test, _ = nearest_neighbours(test, train)
    d_copy, _ = nearest_neighbours(train[:300], train)
    d_fresh, _ = nearest_neighbours(digits["test"][300:600], train)
    copied = distance_stats(d_copy[:, 0], d_test[:, 0], "pixel")
    fresh = distance_stats(d_fresh[:, 0], d_test[:, 0], "pixel")
    MEASURED.update({"nn_ratio_copies": copied["nn_pixel_ratio"], "nn_ratio_fresh": fresh["nn_pixel_ratio"]})
    assert copied["nn_pixel_median_samples"] == 0.0 and copied["nn_pixel_frac_below_test_p05"] == 1.0
    assert 0.8 < fresh["nn_pixel_ratio"] < 1.25 and fresh["nn_pixel_frac_below_test_p05"] < 0.15
