"""Speed of the paper network against a plain eager port of the reference: forward and training step.

Usage::

    python bench/bench_networks.py                       # MNIST net, batch 64, baseline vs fast, on CPU
    python bench/bench_networks.py --variants baseline fast compile bf16 compile-bf16 --repeats 5
    python bench/bench_networks.py --device cuda --which cifar --batch 128 \\
        --variants baseline fast compile bf16 compile-bf16 --peak-tflops 989

Variants (all load the same state dict):

* ``baseline``: ``bench/baseline_ncsn.py``, the reference's layers op for op, NCHW, eager.
* ``fast``: ``ncsn.models.refinenet.NCSN`` as the library runs it (fused CondIN++ with a
  closed-form backward, channels-last); the sampling forward runs under ``inference_mode``.
* ``compile``: ``fast`` under ``torch.compile`` (inductor fuses the norm / ELU / add chains).
* ``bf16``, ``compile-bf16``: the same under bf16 autocast (not exact: see the error column).

Networks: ``mnist`` (1×28×28, ngf 64, L = 10, 7.6 M parameters) and ``cifar`` (3×32×32,
ngf 128, 30.1 M). A training step is forward + σ²-weighted DSM loss + backward + Adam step.
The variants run interleaved (one repeat of each in turn, after one warm-up call each),
so load from other processes hits them alike; every figure is a median over
``--repeats``, and the ratios are baseline time / variant time. ``max|Δ|`` is the largest
difference of the variant's forward output from the baseline's, relative to the
baseline output's largest magnitude. FLOPs per image are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; forward, and
forward + backward for the training step); the fraction of peak is
achieved FLOP/s ÷ ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baseline_ncsn import BaselineNCSN  # noqa: E402

from ncsn.models.refinenet import NCSN  # noqa: E402

SIGMAS = torch.logspace(0, -2, 10)  # the paper's σ₁ = 1 … σ_L = 0.01
NETWORKS = {"mnist": ("NCSN 1×28×28 ngf 64", 1, 28, 64), "cifar": ("NCSN 3×32×32 ngf 128", 3, 32, 128)}
VARIANTS = ("baseline", "fast", "compile", "bf16", "compile-bf16")


def flops_per_image(model: nn.Module, channels: int, size: int, device: torch.device) -> tuple[float, float]:
    """(forward FLOPs, forward + backward FLOPs) for one image."""
    x = torch.rand(1, channels, size, size, device=device)
    levels = torch.zeros(1, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(x, levels)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(x, levels).square().sum().backward()
    model.zero_grad(set_to_none=True)
    return float(forward), float(counter.get_total_flops())


class Runner:
    """One variant: its network, optimiser and the two timed calls."""

    def __init__(self, name: str, model: nn.Module, device: torch.device, batch: int, channels: int, size: int) -> None:
        self.name = name
        self.model = model.to(device)
        self.net = torch.compile(self.model) if name.startswith("compile") else self.model
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if name.endswith("bf16")
                         else contextlib.nullcontext())
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(batch, channels, size, size, generator=g).to(device)
        self.z = torch.randn(self.x.shape, generator=g).to(device)
        self.levels = torch.randint(0, len(SIGMAS), (batch,), generator=g).to(device)
        self.sigma = SIGMAS.to(device)[self.levels].view(-1, 1, 1, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.0)  # lr 0: every repeat sees the same weights
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.inference = contextlib.nullcontext if name == "baseline" else torch.inference_mode

    def forward(self) -> torch.Tensor:
        self.model.eval()
        with self.inference(), torch.no_grad(), self.autocast:
            out = self.net(self.x, self.levels)
        self.sync()
        return out

    def train_step(self) -> None:
        self.model.train()
        with self.autocast:
            out = self.net(self.x + self.sigma * self.z, self.levels)
        loss = 0.5 * (self.sigma * out.float() + self.z).pow(2).flatten(1).sum(1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sync()


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_network(key: str, variants: list[str], batch: int, repeats: int, device: torch.device,
                  peak_tflops: float | None, modes: list[str]) -> None:
    title, channels, size, ngf = NETWORKS[key]
    torch.manual_seed(0)
    reference = NCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS)
    state = reference.state_dict()
    params = sum(p.numel() for p in reference.parameters())
    fwd_flops, train_flops = flops_per_image(reference.to(device), channels, size, device)

    runners = []
    for name in variants:
        model = BaselineNCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS) if name == "baseline" else \
            NCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS)
        model.load_state_dict(state)
        runners.append(Runner(name, model, device, batch, channels, size))

    print(f"\n{title}: {params:,} parameters; {fwd_flops / 1e9:.2f} GFLOP forward, "
          f"{train_flops / 1e9:.2f} GFLOP forward + backward per image; batch {batch}")
    first: dict[tuple[str, str], float] = {}
    outputs: dict[str, torch.Tensor] = {}
    times: dict[tuple[str, str], list[float]] = {}
    for mode in modes:
        for r in runners:  # warm-up (and compilation) for each variant
            fn = r.forward if mode == "forward" else r.train_step
            first[(r.name, mode)] = _timed(fn)
            if mode == "forward":
                outputs[r.name] = r.forward().float()
        for _ in range(repeats):
            for r in runners:
                fn = r.forward if mode == "forward" else r.train_step
                times.setdefault((r.name, mode), []).append(_timed(fn))

    ref_name = "baseline" if "baseline" in variants else variants[0]
    header = f"{'variant':<14} {'mode':<8} {'s/call':>8} {'ratio':>6} {'img/s':>8} {'GFLOP/s':>8}"
    header += f" {'of peak':>8}" if peak_tflops else ""
    header += f" {'first call s':>12} {'max|Δ| rel':>10}"
    print(header)
    print("-" * len(header))
    for mode in modes:
        base = statistics.median(times[(ref_name, mode)])
        for r in runners:
            t = statistics.median(times[(r.name, mode)])
            flops = (fwd_flops if mode == "forward" else train_flops) * batch / t
            line = f"{r.name:<14} {mode:<8} {t:>8.3f} {base / t:>6.2f} {batch / t:>8.1f} {flops / 1e9:>8.1f}"
            if peak_tflops:
                line += f" {flops / (peak_tflops * 1e12):>8.1%}"
            diff = ""
            if mode == "forward" and "forward" in modes:
                ref_out = outputs[ref_name]
                diff = f"{((outputs[r.name] - ref_out).abs().max() / ref_out.abs().max()).item():.1e}"
            print(line + f" {first[(r.name, mode)]:>12.1f} {diff:>10}")
    print(f"(median of {repeats}; 'first call' includes compilation; ratio = {ref_name} s/call ÷ variant s/call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", nargs="+", choices=sorted(NETWORKS), default=["mnist"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["baseline", "fast"])
    parser.add_argument("--modes", nargs="+", choices=("forward", "train"), default=["forward", "train"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for the dtype used, to print the fraction of peak")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          f" ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    for key in args.which:
        bench_network(key, args.variants, args.batch, args.repeats, device, args.peak_tflops, args.modes)


if __name__ == "__main__":
    main()
