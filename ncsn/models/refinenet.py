"""The paper's score network: a dilated RefineNet with conditional instance normalisation++."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from ncsn.core.precond import ncsnv2_score
from ncsn.models.layers import NormFactory, RefineBlock, ResidualBlock, elu
from ncsn.models.normalization import ConditionalInstanceNorm2dPlus, InstanceNorm2dPlus


class NCSN(nn.Module):
    """Noise Conditional Score Network s_θ(x, i) (Song & Ermon 2019, the 4-cascade RefineNet).

    The reference implementation (ermongroup/ncsn, ``models/cond_refinenet_dilated.py``)
    calls it ``CondRefineNetDilated``; that name is an alias of this class.

    Layout (sizes for a 28×28 input, widths in units of ngf)::

        x → 2x − 1 → conv 3×3                                  28×28×1
        res1: ResBlock, ResBlock                               28×28×1 ─────────┐
        res2: ResBlock ↓ (mean pool), ResBlock                 14×14×2 ───────┐ │
        res3: ResBlock ↓ dilation 2, ResBlock dilation 2       14×14×2 ─────┐ │ │
        res4: ResBlock ↓ dilation 4, ResBlock dilation 4       14×14×2 ─┐   │ │ │
        refine1(res4)                                          14×14×2 ←┘   │ │ │
        refine2(res3, refine1)                                 14×14×2 ←────┘ │ │
        refine3(res2, refine2)                                 14×14×1 ←──────┘ │
        refine4(res1, refine3), 3 output RCUs                  28×28×1 ←────────┘
        norm → ELU → conv 3×3                                  28×28×C

    "↓ dilation d" blocks keep the size (dilated convs widen the receptive field
    instead of pooling), so only res2 halves it; any even size works (28, 32, 64
    give 14, 16, 32 inside) and the parameter count does not depend on the size.
    (The reference code's special padding for 28-pixel inputs applies only to an
    undilated downsampling block; the block that requests it is dilated, so it
    has no effect and is not needed here.)
    Every norm is CondIN++ indexed by the level (``conditional=True``), or
    InstanceNorm++ (``conditional=False``, NCSNv2 technique 3), in which case the
    output is divided by σ_i. Activations are ELU.

    With L = 10: 7,638,657 parameters for 1×28×28 at ngf 64, 30,117,635 for
    3×32×32 at ngf 128, as the reference implementation.

    :param channels: image channels C.
    :param image_size: image height = width (even).
    :param ngf: base width.
    :param num_levels: number of noise levels L.
    :param sigmas: [L] descending noise levels; kept as a buffer; required when ``conditional=False``.
    :param conditional: CondIN++ per level (the paper) or unconditional IN++ with output / σ_i (NCSNv2).
    :param rescale: map inputs x ∈ [0, 1] to 2x − 1 first.
    :param channels_last: keep the conv weights and the activations in channels-last layout
        (faster convolutions on CPUs and GPUs; the same numbers). Inputs and outputs are
        ordinary NCHW tensors either way, and state dicts load into both.
    """

    def __init__(self, channels: int, image_size: int, ngf: int, num_levels: int, *,
                 sigmas: Tensor | None = None, conditional: bool = True, rescale: bool = True,
                 channels_last: bool = True) -> None:
        super().__init__()
        if not conditional and sigmas is None:
            raise ValueError("NCSN(conditional=False) divides its output by sigmas[levels]: pass sigmas")
        if sigmas is not None and tuple(sigmas.shape) != (num_levels,):
            raise ValueError(f"sigmas must have shape [{num_levels}], got {tuple(sigmas.shape)}")
        if image_size % 2:
            raise ValueError(f"image_size must be even (one 2× downsampling), got {image_size}")
        self.channels, self.image_size, self.num_levels = channels, image_size, num_levels
        self.conditional, self.rescale = conditional, rescale
        self.sigmas: Tensor | None
        if sigmas is not None:
            self.register_buffer("sigmas", sigmas.detach().clone().float())
        else:
            self.sigmas = None
        norm: NormFactory = (partial(ConditionalInstanceNorm2dPlus, num_levels=num_levels) if conditional
                             else InstanceNorm2dPlus)
        w1, w2 = ngf, 2 * ngf

        self.begin_conv = nn.Conv2d(channels, w1, 3, padding=1)
        self.res1 = nn.ModuleList([ResidualBlock(w1, w1, norm), ResidualBlock(w1, w1, norm)])
        self.res2 = nn.ModuleList([ResidualBlock(w1, w2, norm, down=True), ResidualBlock(w2, w2, norm)])
        self.res3 = nn.ModuleList([ResidualBlock(w2, w2, norm, down=True, dilation=2),
                                   ResidualBlock(w2, w2, norm, dilation=2)])
        self.res4 = nn.ModuleList([ResidualBlock(w2, w2, norm, down=True, dilation=4),
                                   ResidualBlock(w2, w2, norm, dilation=4)])
        self.refine1 = RefineBlock([w2], w2, norm)
        self.refine2 = RefineBlock([w2, w2], w2, norm)
        self.refine3 = RefineBlock([w2, w2], w1, norm)
        self.refine4 = RefineBlock([w1, w1], w1, norm, end=True)
        self.norm_out = norm(w1)
        self.end_conv = nn.Conv2d(w1, channels, 3, padding=1)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def _stage(blocks: nn.ModuleList, h: Tensor, levels: Tensor) -> Tensor:
        for block in blocks:
            h = block(h, levels)
        return h

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        """:param x: [B, C, H, W] noisy images (data range [0, 1] when ``rescale``), H and W even.
        :param levels: [B] int64 in 0..L−1 (0 = largest σ).
        :return: [B, C, H, W] estimated score ∇ₓ log p_σ(x).
        """
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected [B, {self.channels}, H, W], got {tuple(x.shape)}"
        assert levels.shape == (x.shape[0],), f"levels must have shape [{x.shape[0]}], got {tuple(levels.shape)}"
        h = 2 * x - 1.0 if self.rescale else x
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.begin_conv(h)
        layer1 = self._stage(self.res1, h, levels)
        layer2 = self._stage(self.res2, layer1, levels)
        layer3 = self._stage(self.res3, layer2, levels)
        layer4 = self._stage(self.res4, layer3, levels)

        ref = self.refine1([layer4], levels, layer4.shape[2:])
        ref = self.refine2([layer3, ref], levels, layer3.shape[2:])
        ref = self.refine3([layer2, ref], levels, layer2.shape[2:])
        ref = self.refine4([layer1, ref], levels, layer1.shape[2:])

        out = self.end_conv(elu(self.norm_out(ref, levels)))
        if not self.conditional:
            assert self.sigmas is not None
            out = ncsnv2_score(out, self.sigmas[levels].view(-1, 1, 1, 1))
        return out.contiguous()


CondRefineNetDilated = NCSN  # the reference implementation's name for the paper's network
