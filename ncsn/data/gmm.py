"""``gmm``: points drawn from the paper's 2-D toy mixture ``ncsn.core.toy.paper_mixture()``,
p = 1/5·N((−5, −5), I) + 4/5·N((5, 5), I)."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_gmm(n: int, seed: int) -> Tensor:
    """``n`` i.i.d. draws from the toy mixture with a generator seeded by ``seed``.

    :return: float32 [n, 2].
    """
    from ncsn.core.toy import paper_mixture

    generator = torch.Generator().manual_seed(seed)
    return paper_mixture().sample(n, generator=generator).float().contiguous()
