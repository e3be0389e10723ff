"""Does the model copy its training images? Nearest training neighbours of samples.

For each sample we find its nearest training example (L2 distance, in pixel space with
pixels in [0, 1], and in the classifier's feature space when one exists). The same
distance is measured for held-out test images, which the model never saw: a model that
generalises puts its samples about as far from the training set as fresh real images are
(ratio of medians ≈ 1 or above), while a model that copies training images gives much
smaller distances (ratio ≪ 1, many samples closer than almost any test image).

Statistics per space (``pixel`` or ``classifier``), in ``metrics.json``::

    nn_{space}_median_samples   median distance sample -> nearest training example
    nn_{space}_median_test      median distance test image -> nearest training example
    nn_{space}_ratio            the first over the second
    nn_{space}_frac_below_test_p05
                                fraction of samples nearer than the 5th percentile of the
                                test distances (≈ 0.05 without copying, → 1 when copying)
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torch import Tensor

from ncsn.storage.tables import write_bytes
from ncsn.storage.images import save_grid


def _flat(x: Tensor) -> Tensor:
    """[N, ...] uint8 images -> float32 [N, D] in [0, 1]; float data as is."""
    x = x.reshape(len(x), -1)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def nearest_neighbours(queries: Tensor, reference: Tensor, k: int = 1, *, query_batch: int = 256,
                       reference_batch: int = 8192, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The ``k`` nearest rows of ``reference`` for every row of ``queries`` (Euclidean).

    Candidates are found with the fast matrix-product form of the distance, then their
    distances are recomputed as ``‖q − r‖`` so an exact copy reads exactly 0.

    :param queries: [Q, ...] uint8 images (scaled to [0, 1]) or float features/vectors.
    :param reference: [R, ...] of the same kind, R >= k.
    :return: (distances [Q, k] ascending, indices [Q, k] into ``reference``), on the CPU.
    """
    q_all, r_all = _flat(queries), _flat(reference)
    assert q_all.shape[1] == r_all.shape[1], f"dimension mismatch: {q_all.shape[1]} vs {r_all.shape[1]}"
    assert len(r_all) >= k, f"need at least {k} reference rows, got {len(r_all)}"
    pool = min(len(r_all), k + 8)  # a few spare candidates against rounding in the fast form
    r_dev = r_all.to(device)
    r_sq = (r_dev * r_dev).sum(1)
    out_d, out_i = [], []
    for qs in range(0, len(q_all), query_batch):
        q = q_all[qs:qs + query_batch].to(device)
        q_sq = (q * q).sum(1, keepdim=True)
        best_d = torch.full((len(q), 0), math.inf, device=device)
        best_i = torch.zeros((len(q), 0), dtype=torch.long, device=device)
        for rs in range(0, len(r_dev), reference_batch):
            r = r_dev[rs:rs + reference_batch]
            d2 = q_sq + r_sq[rs:rs + reference_batch][None, :] - 2.0 * q @ r.T
            cand_d = torch.cat([best_d, d2], 1)
            cand_i = torch.cat([best_i, torch.arange(rs, rs + len(r), device=device).expand(len(q), -1)], 1)
            best_d, pos = cand_d.topk(min(pool, cand_d.shape[1]), dim=1, largest=False)
            best_i = cand_i.gather(1, pos)
        exact = (q[:, None, :] - r_dev[best_i]).norm(dim=-1)
        exact, order = exact.sort(dim=1)
        out_d.append(exact[:, :k].cpu())
        out_i.append(best_i.gather(1, order)[:, :k].cpu())
    return torch.cat(out_d), torch.cat(out_i)


def distance_stats(sample_dist: Tensor, test_dist: Tensor, space: str) -> dict[str, float]:
    """Summary of nearest-neighbour distances (see module docstring).

    :param sample_dist: [Q] distance of each sample to its nearest training example.
    :param test_dist: [T] the same for held-out test images.
    """
    med_s, med_t = float(sample_dist.median()), float(test_dist.median())
    p05 = float(torch.quantile(test_dist.double(), 0.05))
    return {
        f"nn_{space}_median_samples": med_s,
        f"nn_{space}_median_test": med_t,
        f"nn_{space}_ratio": med_s / med_t if med_t > 0 else math.nan,
        f"nn_{space}_frac_below_test_p05": float((sample_dist < p05).double().mean()),
    }


def neighbours_table(grid: Tensor, reference: Tensor, index_groups: list[Tensor]) -> Tensor:
    """Rows of images: sample ``i``, then for each group a white divider and its neighbours.

    :param grid: [G, C, H, W] uint8 samples.
    :param reference: [R, C, H, W] uint8 training images.
    :param index_groups: tensors [G, k] of indices into ``reference`` (e.g. pixel, then classifier space).
    :return: [G * (1 + Σ(1 + k)), C, H, W] uint8, row-major (one row per sample).
    """
    divider = torch.full_like(grid[:1], 255)
    rows = []
    for i in range(len(grid)):
        row = [grid[i:i + 1]]
        for idx in index_groups:
            row += [divider, reference[idx[i]]]
        rows.append(torch.cat(row))
    return torch.cat(rows)


def save_neighbours_image(grid: Tensor, reference: Tensor, index_groups: list[Tensor], path: str | Path) -> None:
    """``nearest_neighbours.png``: each row is a sample, then its nearest training images per group."""
    assert len(grid) >= 1, "need at least one sample to show"
    table = neighbours_table(grid, reference, index_groups)
    save_grid(table, path, nrow=1 + sum(1 + idx.shape[1] for idx in index_groups))


def save_neighbours_scatter(points: Tensor, reference: Tensor, index: Tensor, path: str | Path) -> None:
    """Vector data: training points (grey), samples (blue) joined to their nearest training point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    ref = reference[:, :2].float()
    ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.7")
    pts = points[:, :2].float()
    near = ref[index[:, 0]]
    for p, n in zip(pts, near):
        ax.plot([p[0], n[0]], [p[1], n[1]], c="tab:red", lw=0.8)
    ax.scatter(pts[:, 0], pts[:, 1], s=12, c="tab:blue")
    ax.set_title("samples (blue) and nearest training points")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
