"""Randomness passed in explicitly.

Every random draw of the library goes through these helpers, with a
``generator`` argument that is one of

* ``None``: torch's global generator;
* a ``torch.Generator``: one stream for the whole batch;
* a sequence of ``B`` generators, one per example: row ``i`` is drawn from
  ``generator[i]`` alone, so example ``i`` is the same whatever the batch size
  or its position in the batch.

Generators must live on the device of the tensors they fill
(see :func:`make_generators`).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

GeneratorLike = Union[torch.Generator, Sequence[torch.Generator], None]


def make_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per seed, on ``device``.

    :param seeds: [B] integer seeds; example ``i`` will draw from ``seeds[i]``.
    :return: B seeded generators.
    """
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def _per_example(generator: GeneratorLike) -> list[torch.Generator] | None:
    """The list of per-example generators, or None for a single stream."""
    if generator is None or isinstance(generator, torch.Generator):
        return None
    return list(generator)


def _check_batch(generators: list[torch.Generator], batch: int) -> None:
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} per-example generators for a batch of {batch}")


def randn_like(x: Tensor, generator: GeneratorLike = None) -> Tensor:
    """Standard normal noise with the shape, dtype and device of ``x``.

    :param x: [B, ...] template tensor.
    :param generator: see the module docstring; a sequence must hold B generators.
    :return: [B, ...] samples of N(0, I).
    """
    gens = _per_example(generator)
    if gens is None:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    _check_batch(gens, x.shape[0])
    return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) for g in gens])


def rand_like(x: Tensor, generator: GeneratorLike = None) -> Tensor:
    """Uniform noise on [0, 1) with the shape, dtype and device of ``x``.

    :param x: [B, ...] template tensor.
    :param generator: see the module docstring; a sequence must hold B generators.
    :return: [B, ...] samples of U[0, 1).
    """
    gens = _per_example(generator)
    if gens is None:
        return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    _check_batch(gens, x.shape[0])
    return torch.stack([torch.rand(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) for g in gens])


def randint(high: int, batch: int, generator: GeneratorLike = None,
            device: torch.device | str = "cpu") -> Tensor:
    """Integers drawn uniformly from {0, …, high − 1}, one per example.

    :param high: number of values (e.g. the number of noise levels L).
    :param batch: B.
    :param generator: see the module docstring; a sequence must hold B generators.
    :return: [B] int64 on ``device``.
    """
    gens = _per_example(generator)
    if gens is None:
        return torch.randint(0, high, (batch,), generator=generator, device=device)
    _check_batch(gens, batch)
    return torch.cat([torch.randint(0, high, (1,), generator=g, device=device) for g in gens])
