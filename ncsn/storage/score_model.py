"""A score network rebuilt from a checkpoint, ready for the samplers.

:func:`load_score_model` rebuilds the network of a checkpoint (a path, or a dict already
loaded by ``ncsn.storage.checkpoint``) from this package's source and its state dict, and decides how
the samplers call it (bf16 autocast, ``torch.compile``). Sample ``i`` of a run starts from its
own generator seeded with ``seeds[i]`` (:func:`initial_state`), so it is the same whatever the
batch it falls in (up to the float rounding of the network's kernels at another batch size).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ncsn.storage.checkpoint import checkpoint_sigmas, load_checkpoint
from ncsn.config import ModelConfig, SampleConfig
from ncsn.config.loading import build_section
from ncsn.stages.devices import bf16_slow_reason
from ncsn.models import build_model
from ncsn.core.rng import make_generators, rand_like
from ncsn.core.sampling.denoiser import Denoiser, sigma_score, tweedie_denoiser

ScoreFn = Callable[[Tensor, Tensor], Tensor]
log = logging.getLogger(__name__)


@dataclass
class ScoreModel:
    """A score network ready for sampling, with what describes it."""

    net: nn.Module
    sigmas: torch.Tensor  # [L], on the network's device
    checkpoint: dict[str, Any]
    score_fn: ScoreFn | None = None  # what the samplers call (compiled / autocast); ``net`` when None
    sigma_fn: ScoreFn | None = None  # s(x, sigma [B]) for any σ, likewise; ``net.forward_sigma`` when None

    def score(self) -> ScoreFn:
        """s(x [B, ...], levels [B] int64) → [B, ...]: the network at its trained levels."""
        return self.net if self.score_fn is None else self.score_fn

    def sigma_score(self) -> ScoreFn:
        """s(x [B, ...], sigma [B]) → [B, ...]: a trained level by its index, any other σ through
        ``forward_sigma`` (U-Net, MLP); the RefineNet (``ncsn``, ``ncsnv2``) refuses another σ in one
        line naming its levels (``ncsn.core.sampling.denoiser.sigma_score``)."""
        sigma_fn = self.sigma_fn if self.sigma_fn is not None else getattr(self.net, "forward_sigma", None)
        arch = self.checkpoint["config"]["model"]["arch"]
        return sigma_score(self.score(), self.sigmas, sigma_fn, name=f"model.arch {arch!r}",
                           hint="sample it on those levels (sample.schedule: levels)")

    def denoiser(self) -> Denoiser:
        """D(x; σ) = x + σ² s(x; σ) (:meth:`sigma_score`): what every sampler of ``ncsn.core.sampling`` takes."""
        return tweedie_denoiser(self.sigma_score())

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W), or (D,) for vector data."""
        data = self.checkpoint["data"]
        if data["image_size"]:
            return (data["channels"], data["image_size"], data["image_size"])
        return (data["channels"],)

    @property
    def logit_transform(self) -> bool:
        return bool(self.checkpoint["config"]["data"]["logit_transform"])


def sampling_score_fn(net: nn.Module, *, bf16: bool = False, compile: bool = False) -> ScoreFn:
    """The network as the samplers call it.

    :param bf16: run it under bf16 autocast on its own device (CPU or CUDA); the score comes
        back as float32, so the sampler's state stays float32. Not exact (≈2 % relative error);
        slower than float32 on a CPU without native bf16 (a warning says so).
    :param compile: ``torch.compile`` it (exact; each new batch shape compiles again).
    :return: s(x [B, ...], levels [B]) → [B, ...] float32.
    """
    return _as_sampled(net, net, bf16=bf16, compile=compile, warn=True)


def _as_sampled(net: nn.Module, fn: ScoreFn, *, bf16: bool, compile: bool, warn: bool = False) -> ScoreFn:
    """``fn`` (the network's forward or forward_sigma) compiled and/or under bf16 autocast."""
    if not (bf16 or compile):
        return fn
    fn = torch.compile(fn) if compile else fn
    if not bf16:
        return fn
    device = next(net.parameters()).device
    reason = bf16_slow_reason(device)
    if reason and warn:
        log.warning("sample.bf16 is on, but %s; set sample.bf16: false", reason)
    device_type = device.type

    def score(x: Tensor, cond: Tensor) -> Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = fn(x, cond)
        return out.float()

    return score


def network_args(model: ModelConfig) -> dict[str, Any]:
    """The ``model.*`` keys that shape the network, as :func:`ncsn.models.build_model` takes them."""
    return {"arch": model.arch, "ngf": model.ngf, "mults": model.mults, "precond": model.precond,
            "attention": model.attention}


def load_score_model(source: str | Path | dict[str, Any], device: torch.device | str = "cpu",
                     *, use_ema: bool = True, bf16: bool = False, compile: bool = False) -> ScoreModel:
    """Rebuild the network of a checkpoint (path or loaded dict) in eval mode.

    :param use_ema: take the EMA weights when the checkpoint has them.
    :param bf16: / :param compile: how the samplers call the network (:func:`sampling_score_fn`).
    :raises CheckpointError: for unreadable or unsafe files.
    """
    ckpt = source if isinstance(source, dict) else load_checkpoint(source)
    sigmas = checkpoint_sigmas(ckpt).to(device)
    # read as params.yaml is: lists (model.mults) become tuples; keys added since it was written take their defaults
    where = "checkpoint" if isinstance(source, dict) else str(source)
    model_cfg = build_section("model", ckpt["config"]["model"], where)
    net = build_model(**network_args(model_cfg), channels=ckpt["data"]["channels"],
                      image_size=ckpt["data"]["image_size"], sigmas=sigmas)
    weights = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    net.load_state_dict(weights)
    net = net.to(device).eval()
    forward_sigma = getattr(net, "forward_sigma", None)
    sigma_fn = None if forward_sigma is None else _as_sampled(net, forward_sigma, bf16=bf16, compile=compile)
    return ScoreModel(net, sigmas, ckpt, sampling_score_fn(net, bf16=bf16, compile=compile), sigma_fn)


def load_for_sampling(source: str | Path | dict[str, Any], device: torch.device | str,
                      cfg: SampleConfig) -> ScoreModel:
    """:func:`load_score_model` as ``sample.*`` asks: EMA weights, bf16 autocast and compilation."""
    return load_score_model(source, device, use_ema=cfg.use_ema, bf16=cfg.bf16, compile=cfg.compile)


def to_uint8(x: torch.Tensor, *, logit_transform: bool = False) -> torch.Tensor:
    """Model-space images → uint8 pixels.

    :param x: [B, C, H, W] in [0, 1] (or logit space when ``logit_transform``).
    :return: [B, C, H, W] uint8 on the CPU.
    """
    if logit_transform:
        x = torch.sigmoid(x)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def to_storage(x: torch.Tensor, model: ScoreModel) -> torch.Tensor:
    """Samples as stored: uint8 [B, C, H, W] images, or float [B, D] points, on the CPU."""
    return to_uint8(x, logit_transform=model.logit_transform) if x.ndim == 4 else x.float().cpu()


def initial_state(model: ScoreModel, seeds: Sequence[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Uniform starting points x₀ ~ U[0,1)^D (paper Algorithm 1), one generator per sample.

    :return: (x0 [len(seeds), *shape] on the model's device, the generators).
    """
    device = model.sigmas.device
    generators = make_generators(seeds, device)
    x0 = rand_like(torch.empty(len(seeds), *model.shape, device=device), generators)
    return x0, generators
