"""Throughput of the score networks: forward and training-step images per second.

Usage: ``python bench/bench_networks.py [--batch 64] [--repeats 5] [--which mnist cifar cpu]``

* ``mnist``: the paper's NCSN for 1×28×28, ngf 64, L = 10.
* ``cifar``: the paper's NCSN for 3×32×32, ngf 128, L = 10.
* ``cpu``:   the network ``ncsn.models.build_model`` builds for the default
  ``ModelConfig`` on 1×28×28 (skipped when it cannot be built).

A training step is forward + σ²-weighted DSM loss + backward + Adam step.
Each figure is the median over ``--repeats`` timed runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

SIGMAS = torch.logspace(0, -2, 10)  # the paper's σ₁ = 1 … σ_L = 0.01


def _paper_network(channels: int, size: int, ngf: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from ncsn.models.refinenet import NCSN

        return NCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS)

    return build


def _cpu_network() -> nn.Module:
    from ncsn.config import ModelConfig
    from ncsn.models import build_model

    return build_model(ModelConfig(), channels=1, image_size=28, sigmas=SIGMAS)


NETWORKS: dict[str, tuple[str, tuple[int, int], Callable[[], nn.Module]]] = {
    "mnist": ("NCSN 1×28×28 ngf 64", (1, 28), _paper_network(1, 28, 64)),
    "cifar": ("NCSN 3×32×32 ngf 128", (3, 32), _paper_network(3, 32, 128)),
    "cpu": ("build_model(ModelConfig()) 1×28×28", (1, 28), _cpu_network),
}


def _median_seconds(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(model: nn.Module, channels: int, size: int, batch: int, repeats: int,
          device: torch.device) -> tuple[float, float]:
    """(forward img/s, training-step img/s) at ``batch`` images per call."""
    model = model.to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, channels, size, size, generator=g).to(device)
    z = torch.randn(x.shape, generator=g).to(device)
    levels = torch.randint(0, len(SIGMAS), (batch,), generator=g).to(device)
    sigma = SIGMAS.to(device)[levels].view(-1, 1, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            model(x, levels)
        sync()

    def train_step() -> None:
        loss = 0.5 * (sigma * model(x + sigma * z, levels) + z).pow(2).flatten(1).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    model.eval()
    t_fwd = _median_seconds(forward, repeats)
    model.train()
    t_train = _median_seconds(train_step, repeats)
    return batch / t_fwd, batch / t_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--which", nargs="+", choices=sorted(NETWORKS), default=["mnist", "cifar", "cpu"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"batch {args.batch}, median of {args.repeats} after 1 warm-up")
    header = f"{'network':<38} {'params':>11} {'forward img/s':>14} {'train img/s':>12}"
    print(header)
    print("-" * len(header))
    for key in args.which:
        name, (channels, size), build = NETWORKS[key]
        try:
            torch.manual_seed(0)
            model = build()
        except Exception as err:  # the CPU factory may not exist yet
            print(f"{name:<38} skipped: {type(err).__name__}: {err}")
            continue
        params = sum(p.numel() for p in model.parameters())
        fwd, train = bench(model, channels, size, args.batch, args.repeats, device)
        print(f"{name:<38} {params:>11,} {fwd:>14.1f} {train:>12.1f}")


if __name__ == "__main__":
    main()
