"""Index batches from reshuffled epochs, resumable exactly from a small state dict."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor


class BatchSampler:
    """An endless stream of index batches over ``range(n)``.

    Every epoch is a fresh ``torch.randperm(n)`` drawn from ``generator``; batches are
    consecutive slices of the epochs laid end to end, so every batch holds exactly
    ``batch_size`` indices (a batch may straddle two epochs) and every index appears once
    per epoch. Unlike ``torch.utils.data.BatchSampler`` it never ends.

    The whole state is the generator state at the start of the current epoch plus the
    position in that epoch: :meth:`state_dict` / :meth:`load_state_dict` continue the
    stream exactly, and leave ``generator`` where the original run had it.

    :param n: dataset size N ≥ 1.
    :param batch_size: B ≥ 1 (may exceed N).
    :param generator: a CPU generator, used only by this sampler.
    """

    def __init__(self, n: int, batch_size: int, *, generator: torch.Generator) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self._start_epoch(generator.get_state(), position=0)

    def _start_epoch(self, state: Tensor, position: int) -> None:
        self.generator.set_state(state)
        self._epoch_state = state.clone()
        self._perm = torch.randperm(self.n, generator=self.generator)
        self._position = position

    def __iter__(self) -> Iterator[Tensor]:
        return self

    def __next__(self) -> Tensor:
        """The next batch: int64 [batch_size] indices in [0, n)."""
        parts, need = [], self.batch_size
        while need:
            if self._position == self.n:
                self._start_epoch(self.generator.get_state(), position=0)
            take = min(need, self.n - self._position)
            parts.append(self._perm[self._position:self._position + take])
            self._position += take
            need -= take
        return torch.cat(parts)

    def state_dict(self) -> dict[str, Any]:
        """``{"n", "batch_size", "epoch_generator_state" (uint8 tensor), "position"}``."""
        return {"n": self.n, "batch_size": self.batch_size,
                "epoch_generator_state": self._epoch_state.clone(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; ``n`` and ``batch_size`` must match.

        :raises ValueError: when the state belongs to another dataset size or batch size.
        """
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise ValueError(f"sampler state is for n={state['n']}, batch_size={state['batch_size']}; "
                             f"this sampler has n={self.n}, batch_size={self.batch_size}")
        self._start_epoch(state["epoch_generator_state"], position=int(state["position"]))
