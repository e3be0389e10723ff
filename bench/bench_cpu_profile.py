"""Training throughput of the cpu-profile network: img/s, FLOPs per image, GFLOP/s and the fraction of peak.

Usage::

    python bench/bench_cpu_profile.py                         # the composed cpu profile as it trains
    python bench/bench_cpu_profile.py --threads 2 --channels-last --steps 30
    python bench/bench_cpu_profile.py --compile --batch-size 256 --peak-gflops 156.5
    python bench/bench_cpu_profile.py -S model.ngf=48         # any Hydra override of the profile
    python bench/bench_cpu_profile.py --variant "model.mults=[0.25,1,3] model.attention=true" \
        --variant "model.mults=[0.5,1,3]"                    # step-time ratios, steps interleaved
    python bench/bench_cpu_profile.py --fused-vs-unfused --steps 30  # fused GroupNorm+FiLM+SiLU vs plain ops

The network is the one ``ncsn.models.build_model`` builds from the composed profile
(``compose_params(["profile=cpu", *overrides])``), for the dataset's image shape. A timed
step is what ``ncsn.stages.train`` does per step, minus the data loading: draw the levels and the
noise, the weighted DSM loss (paper Eq. 5-6, ``train.weighting``) forward, backward, gradient clipping when
``train.grad_clip`` is set, the Adam step and the EMA update when ``train.ema`` is on, then
``loss.item()``; ``train.bf16`` autocasts as training does. ``--channels-last`` and
``--compile`` override ``train.channels_last`` and ``train.compile``.

FLOPs per image are those of one training step's forward + backward at the benchmark's
batch size, divided by it, counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products; norms, activations and Adam are not counted). Times
are medians over ``--steps`` steps after ``--warmup`` steps (the first one, which includes
compilation, is shown apart). With ``--variant`` (space-separated overrides on top of the
profile and ``-S``; repeatable) each network takes one step in turn, round after round, so that a
machine whose speed drifts slows them all alike; the table gives each one's median and its
ratio to the first. ``--fused-vs-unfused`` does the same for the U-Net with and without its fused
GroupNorm + FiLM + SiLU (``UNet.fused_norm``, ``ncsn.models.group_norm``; the same weights),
with steps/s, img/s, GFLOP/s and the fraction of peak of each, the ratio of the medians and the
median of the per-round ratios; ``--fused`` / ``--no-fused`` time one of them alone. The default peak is an estimate: threads (at most the CPUs
available) × clock × float32 FLOP per cycle per core (32 for AVX2 or AMD's AVX-512, two
8-wide FMA units; 64 for Intel's AVX-512; 16 without AVX2); ``--peak-gflops`` replaces it.
On a machine shared with other processes the figures can be off by a factor of 2-3.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncsn.config import Config, config_from_dict  # noqa: E402
from ncsn.config.composition import compose_params  # noqa: E402
from ncsn.data.prepare import NATIVE_CHANNELS, NATIVE_SIZE  # noqa: E402
from ncsn.stages.devices import usable_cpus  # noqa: E402
from ncsn.core.losses.weighting import draw_levels, weighted_dsm_loss  # noqa: E402
from ncsn.models import build_model, count_parameters  # noqa: E402
from ncsn.storage.score_model import network_args  # noqa: E402
from ncsn.core.sigmas import geometric_sigmas  # noqa: E402
from ncsn.data.stats import resolve_sigmas  # noqa: E402


def cpu_info() -> dict[str, str]:
    """Vendor, model name, clock (MHz) and flags of the first CPU in /proc/cpuinfo ('' when unknown)."""
    info = {"vendor_id": "", "model name": platform.processor(), "cpu MHz": "", "flags": ""}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        if key.strip() in info:
            info[key.strip()] = value.strip()
    return info


def estimated_peak_gflops(info: dict[str, str], capability: str, threads: int) -> tuple[float | None, str]:
    """(float32 peak GFLOP/s, how it was estimated); None when the clock is unknown."""
    match = re.search(r"@\s*([\d.]+)\s*GHz", info["model name"])
    ghz = float(match.group(1)) if match else (float(info["cpu MHz"]) / 1000 if info["cpu MHz"] else None)
    if capability.startswith("AVX512") and info["vendor_id"] == "GenuineIntel":
        per_cycle, why = 64, "AVX-512, two 16-wide FMA units"
    elif capability.startswith(("AVX2", "AVX512")):
        per_cycle, why = 32, "two 8-wide FMA units"
    else:
        per_cycle, why = 16, "no AVX2"
    cores = min(threads, usable_cpus())
    if ghz is None:
        return None, "clock unknown: pass --peak-gflops"
    return cores * ghz * per_cycle, f"{cores} cores × {ghz:.2f} GHz × {per_cycle} FLOP/cycle ({why})"


def image_shape(cfg: Config) -> tuple[int, int]:
    """(channels, image size) of the profile's dataset."""
    name = cfg.base.dataset
    channels = cfg.data.channels or NATIVE_CHANNELS.get(name, 3)
    size = cfg.data.image_size or NATIVE_SIZE.get(name, 32)
    return channels, size


def noise_levels(cfg: Config) -> tuple[torch.Tensor, str]:
    """The σ schedule: from the numbers in ``model.*``, else the prepare stage's stats, else a stand-in."""
    mc = cfg.model
    if mc.sigma_begin != "auto" and mc.num_levels != "auto":
        return geometric_sigmas(float(mc.sigma_begin), mc.sigma_end, int(mc.num_levels)), "model.*"
    stats = Path(cfg.paths.prepare) / "stats.json"
    if stats.is_file():
        return resolve_sigmas(mc, json.loads(stats.read_text())), str(stats)
    levels = 10 if mc.num_levels == "auto" else int(mc.num_levels)
    begin = 1.0 if mc.sigma_begin == "auto" else float(mc.sigma_begin)
    return geometric_sigmas(begin, mc.sigma_end, levels), f"stand-in (no {stats}): σ₁ = {begin}, L = {levels}"


class TrainStep:
    """One training step of ``ncsn.stages.train`` on a fixed in-memory batch."""

    def __init__(self, cfg: Config, batch: int, channels_last: bool, compile: bool, fused: bool | None = None) -> None:
        tc = cfg.train
        self.cfg, self.channels_last = cfg, channels_last
        channels, size = image_shape(cfg)
        self.sigmas, self.sigma_source = noise_levels(cfg)
        torch.manual_seed(cfg.base.seed)
        self.model = build_model(**network_args(cfg.model), channels=channels, image_size=size,
                                 sigmas=self.sigmas)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if fused is not None and hasattr(self.model, "fused_norm"):
            self.model.fused_norm = fused
        self.net = torch.compile(self.model) if compile else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=tc.lr, betas=(tc.beta1, 0.999),
                                          weight_decay=tc.weight_decay)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_rate), use_buffers=True)
                    if tc.ema else None)
        self.x = torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.gen = torch.Generator().manual_seed(1)

    def loss(self, net: torch.nn.Module) -> torch.Tensor:
        tc = self.cfg.train
        levels = draw_levels(tc.weighting, self.sigmas, len(self.x), self.gen, log_sigma_mean=tc.log_sigma_mean,
                             log_sigma_std=tc.log_sigma_std)
        noise = torch.randn(self.x.shape, generator=self.gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tc.bf16):
            return weighted_dsm_loss(net, self.x, self.sigmas, weighting=tc.weighting, anneal_power=tc.anneal_power,
                                     levels=levels, noise=noise).mean()

    def __call__(self) -> float:
        start = time.perf_counter()
        loss = self.loss(self.net)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        loss.item()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return time.perf_counter() - start

    def flops_per_image(self) -> float:
        """FLOPs of the forward + backward of one step (eager network), per image."""
        with FlopCounterMode(display=False) as counter:
            self.loss(self.model).backward()
        self.model.zero_grad(set_to_none=True)
        return counter.get_total_flops() / len(self.x)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="profile to compose (default: cpu)")
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override of the profile, e.g. model.ngf=48 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the profile's train.batch_size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="default: the profile's train.channels_last")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the network (default: the profile's train.compile)")
    parser.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="another network to time against the profile, steps interleaved (repeatable)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                        help="the U-Net's fused GroupNorm + FiLM + SiLU (UNet.fused_norm; default: the network's)")
    parser.add_argument("--fused-vs-unfused", action="store_true",
                        help="time the network with and without the fused op, steps interleaved")
    parser.add_argument("--peak-gflops", type=float, default=None,
                        help="the CPU's float32 peak GFLOP/s (default: estimated, see the docstring)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_dict(compose_params([f"profile={args.profile}", *args.set]))
    batch = args.batch_size or cfg.train.batch_size
    channels_last = cfg.train.channels_last if args.channels_last is None else args.channels_last
    compile = cfg.train.compile if args.compile is None else args.compile
    threads = torch.get_num_threads()
    info, capability = cpu_info(), torch.backends.cpu.get_cpu_capability()
    peak, peak_note = ((args.peak_gflops, "--peak-gflops") if args.peak_gflops
                       else estimated_peak_gflops(info, capability, threads))
    print(f"CPU: {info['model name'] or 'unknown'} ({info['vendor_id'] or 'unknown vendor'}), "
          f"{usable_cpus()} CPUs available, {info['cpu MHz'] or '?'} MHz")
    print(f"torch {torch.__version__}: CPU capability {capability}, {threads} threads; "
          f"bf16 autocast {cfg.train.bf16}")
    print(f"peak: {f'{peak:.1f} GFLOP/s' if peak else 'unknown'} ({peak_note})")

    if args.variant:
        compare(args, batch, channels_last, compile)
        return
    if args.fused_vs_unfused:
        fused_vs_unfused(args, cfg, batch, channels_last, compile, peak)
        return
    step = TrainStep(cfg, batch, channels_last, compile, args.fused)
    channels, size = image_shape(cfg)
    flops = step.flops_per_image()
    overrides = "".join(f" -S {o}" for o in args.set)
    print(f"network: profile {args.profile}{overrides}, {cfg.model.arch} ngf {cfg.model.ngf}, "
          f"{count_parameters(step.model) / 1e6:.2f} M parameters, {channels}x{size}x{size}, "
          f"L = {len(step.sigmas)} (σ from {step.sigma_source}); EMA {cfg.train.ema}")
    first = step()
    for _ in range(max(0, args.warmup - 1)):
        step()
    times = [step() for _ in range(args.steps)]
    median = statistics.median(times)
    gflops = flops * batch / median / 1e9
    header = (f"{'batch':>5} {'threads':>7} {'ch-last':>7} {'compile':>7} {'s/step':>7} {'img/s':>7} "
              f"{'MFLOP/img':>9} {'GFLOP/s':>8} {'of peak':>7} {'1st step s':>10}")
    print(header)
    print("-" * len(header))
    of_peak = f"{gflops / peak:.1%}" if peak else "?"
    print(f"{batch:>5} {threads:>7} {str(channels_last):>7} {str(compile):>7} {median:>7.3f} {batch / median:>7.1f} "
          f"{flops / 1e6:>9.1f} {gflops:>8.1f} {of_peak:>7} {first:>10.2f}")
    spread = f"{min(times):.3f}-{max(times):.3f} s"
    print(f"(median of {args.steps} steps after {args.warmup} warm-up steps; range {spread}; "
          "FLOPs: forward + backward convolutions and matrix products)")


def compare(args: argparse.Namespace, batch: int, channels_last: bool, compile: bool) -> None:
    """Time the profile's network and every ``--variant`` one step each in turn; medians and ratios."""
    names = ["(the profile)", *args.variant]
    steps = []
    for extra in ["", *args.variant]:
        cfg = config_from_dict(compose_params([f"profile={args.profile}", *args.set, *extra.split()]))
        steps.append(TrainStep(cfg, batch, channels_last, compile))
    flops = [step.flops_per_image() for step in steps]
    for _ in range(max(1, args.warmup)):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(args.steps):
        for k, step in enumerate(steps):
            times[k].append(step())
    base = statistics.median(times[0])
    width = max(len(n) for n in names)
    print(f"{'network':<{width}} {'params M':>8} {'MFLOP/img':>9} {'s/step':>7} {'ratio':>6}")
    for name, step, f, ts in zip(names, steps, flops, times):
        median = statistics.median(ts)
        print(f"{name:<{width}} {count_parameters(step.model) / 1e6:>8.2f} {f / 1e6:>9.1f} {median:>7.3f} "
              f"{median / base:>6.2f}")
    print(f"(batch {batch}, {torch.get_num_threads()} threads; medians of {args.steps} rounds, one step of each"
          f" network per round, after {args.warmup} warm-up rounds)")


def fused_vs_unfused(args: argparse.Namespace, cfg: Config, batch: int, channels_last: bool, compile: bool,
                     peak: float | None) -> None:
    """One step with the plain ops, one with the fused op, round after round: the table of both and their ratio."""
    steps = {"unfused": TrainStep(cfg, batch, channels_last, compile, fused=False),
             "fused": TrainStep(cfg, batch, channels_last, compile, fused=True)}
    if not hasattr(steps["fused"].model, "fused_norm"):
        raise SystemExit(f"model.arch {cfg.model.arch} has no fused GroupNorm (UNet.fused_norm)")
    flops = steps["unfused"].flops_per_image()  # the same convolutions and products either way
    for _ in range(max(1, args.warmup)):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            times[name].append(step())
    header = (f"{'network':<8} {'s/step':>7} {'steps/s':>7} {'img/s':>7} {'MFLOP/img':>9} {'GFLOP/s':>8} "
              f"{'of peak':>7} {'range s':>13}")
    print(f"network: profile {args.profile}, {cfg.model.arch} ngf {cfg.model.ngf}, batch {batch}, "
          f"{torch.get_num_threads()} threads, channels-last {channels_last}, compile {compile}")
    print(header)
    print("-" * len(header))
    for name, ts in times.items():
        median = statistics.median(ts)
        gflops = flops * batch / median / 1e9
        of_peak = f"{gflops / peak:.1%}" if peak else "?"
        print(f"{name:<8} {median:>7.3f} {1 / median:>7.2f} {batch / median:>7.1f} {flops / 1e6:>9.1f} {gflops:>8.1f} "
              f"{of_peak:>7} {min(ts):>6.3f}-{max(ts):.3f}")
    ratio = statistics.median(times["unfused"]) / statistics.median(times["fused"])
    paired = statistics.median(u / f for u, f in zip(times["unfused"], times["fused"]))
    print(f"fused / unfused throughput: {ratio:.2f}x (ratio of medians), {paired:.2f}x (median of the {args.steps} "
          f"per-round ratios); one step of each per round after {args.warmup} warm-up rounds")


if __name__ == "__main__":
    main()
