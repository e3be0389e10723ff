"""Building blocks of the NCSN RefineNet: a dilated pre-activation residual block and the
RefineNet blocks (residual conv unit, multi-resolution fusion, chained residual pooling).

Every block is normalised by a ``norm`` factory: ``norm(num_features)`` returns a
module called as ``norm_module(x, levels)`` (CondIN++, or InstanceNorm++ which
ignores ``levels``). The activation is ELU throughout (``elu``: the same function computed
through exp, which is several times faster than the library ELU's expm1 on CPUs).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormFactory = Callable[[int], nn.Module]


class _ELU(torch.autograd.Function):
    """ELU(x) = max(x, exp(min(x, 0)) − 1), with ``aten.elu_backward`` as its backward.

    (For x > 0 the second term is 0 < x; for x ≤ 0 it is eˣ − 1 ≥ x.) The same function
    as ``F.elu`` (α = 1) within float rounding (≈ 6e−8 absolute near 0, where eˣ − 1 is
    less precise than expm1); on CPUs the library's ELU evaluates expm1 on every element,
    which is 6–7× slower than exp, and an ELU follows every norm of the network.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = torch.maximum(x, x.clamp(max=0).exp_().sub_(1))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        # ELU'(x) = 1 for x > 0, else exp(x) = out + 1
        return torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, out)


def elu(x: Tensor) -> Tensor:
    """ELU with α = 1 (the paper network's activation), elementwise, any shape and layout."""
    return _ELU.apply(x)


def conv3x3(in_ch: int, out_ch: int, *, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    """3×3 convolution, padded to keep the spatial size (padding = dilation)."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=bias)


def mean_pool(x: Tensor) -> Tensor:
    """2×2 average pooling, stride 2: [B, C, H, W] → [B, C, H/2, W/2] (H, W even)."""
    return F.avg_pool2d(x, 2)


def padded_pool5(x: Tensor) -> Tensor:
    """5×5 average pooling, stride 1, zero padding 2 counted in the mean: [B, C, H, W] → [B, C, H, W].

    Off the CPU a channels-last ``x`` is pooled in NCHW layout and handed back channels-last:
    CUDA's channels-last backward of a padded ``avg_pool2d`` returns wrong input gradients with
    no error (pytorch/pytorch#188344, seen with torch 2.11 on an H200: 157 of the paper network's
    173 parameter gradients off by about 100 %; MPS has a similar fault, #175190). The forward
    is right either way; the two layout copies cost little beside the convolutions.
    """
    if x.device.type != "cpu" and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = F.avg_pool2d(x.contiguous(), 5, stride=1, padding=2)
        return out.contiguous(memory_format=torch.channels_last)
    return F.avg_pool2d(x, 5, stride=1, padding=2)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: out = shortcut(x) + conv₂(ELU(norm₂(conv₁(ELU(norm₁(x)))))).

    * ``down=False``: conv₁ maps C_in → C_out, conv₂ C_out → C_out.
    * ``down=True``:  conv₁ maps C_in → C_in, conv₂ C_in → C_out. Without dilation,
      conv₂ and the shortcut are followed by 2×2 mean pooling (half the size);
      with dilation nothing is pooled: the dilated convs widen the receptive
      field instead and the size is kept.
    * shortcut: identity when the width is kept and ``down=False``; otherwise a
      conv (3×3 dilated when ``dilation`` is set, else 1×1).

    Convs are 3×3 with bias, dilated by ``dilation`` (1 when ``None``).

    x [B, C_in, H, W], levels [B] → [B, C_out, H', W'] (H' = H/2 if pooled, else H).
    """

    def __init__(self, in_ch: int, out_ch: int, norm: NormFactory, *, down: bool = False,
                 dilation: int | None = None) -> None:
        super().__init__()
        d = dilation or 1
        mid = in_ch if down else out_ch
        self.pool = down and dilation is None
        self.norm1 = norm(in_ch)
        self.conv1 = conv3x3(in_ch, mid, dilation=d)
        self.norm2 = norm(mid)
        self.conv2 = conv3x3(mid, out_ch, dilation=d)
        self.shortcut: nn.Module | None = None
        if down or in_ch != out_ch:
            self.shortcut = conv3x3(in_ch, out_ch, dilation=d) if dilation else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        h = self.conv1(elu(self.norm1(x, levels)))
        h = self.conv2(elu(self.norm2(h, levels)))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.pool:
            h, skip = mean_pool(h), mean_pool(skip)
        return skip + h


class RCU(nn.Module):
    """Residual conv units: ``n_blocks`` times x ← x + (norm → ELU → conv3×3)^``n_stages``(x).

    Convs have no bias. x [B, C, H, W], levels [B] → [B, C, H, W].
    """

    def __init__(self, features: int, n_blocks: int, n_stages: int, norm: NormFactory) -> None:
        super().__init__()
        self.n_blocks, self.n_stages = n_blocks, n_stages
        self.norms = nn.ModuleList(norm(features) for _ in range(n_blocks * n_stages))
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False) for _ in range(n_blocks * n_stages))

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        for b in range(self.n_blocks):
            residual = x
            for k in range(b * self.n_stages, (b + 1) * self.n_stages):
                x = self.convs[k](elu(self.norms[k](x, levels)))
            x = x + residual
        return x


class CRP(nn.Module):
    """Chained residual pooling: x ← ELU(x); then ``n_stages`` times
    path ← conv3×3(avgpool5×5(norm(path))), x ← x + path (path starts at x).

    Average pooling is 5×5, stride 1, zero padding 2 counted in the mean; convs
    have no bias. x [B, C, H, W], levels [B] → [B, C, H, W].
    """

    def __init__(self, features: int, n_stages: int, norm: NormFactory) -> None:
        super().__init__()
        self.norms = nn.ModuleList(norm(features) for _ in range(n_stages))
        self.convs = nn.ModuleList(conv3x3(features, features, bias=False) for _ in range(n_stages))

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        x = elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs):
            path = conv(padded_pool5(norm(path, levels)))
            x = path + x
        return x


class MSF(nn.Module):
    """Multi-resolution fusion: Σ_j upsample(conv3×3(norm_j(x_j))) to a common size.

    Each input x_j [B, C_j, H_j, W_j] is normalised, mapped to ``features``
    channels by a 3×3 conv with bias, resized bilinearly (corners aligned) to
    ``size``, and the results are summed: → [B, features, *size].
    """

    def __init__(self, in_planes: Sequence[int], features: int, norm: NormFactory) -> None:
        super().__init__()
        self.norms = nn.ModuleList(norm(c) for c in in_planes)
        self.convs = nn.ModuleList(conv3x3(c, features) for c in in_planes)

    def forward(self, xs: Sequence[Tensor], levels: Tensor, size: tuple[int, int]) -> Tensor:
        out: Tensor | None = None
        for x, norm, conv in zip(xs, self.norms, self.convs):
            h = conv(norm(x, levels))
            if tuple(h.shape[2:]) != tuple(size):  # at equal size the resize is the identity
                h = F.interpolate(h, size=size, mode="bilinear", align_corners=True)
            out = h if out is None else out + h
        assert out is not None
        return out


class RefineBlock(nn.Module):
    """RefineNet block: RCU(2 blocks) on each input → MSF (when several inputs) → CRP(2) → RCU.

    The final RCU has 3 blocks in the last RefineBlock (``end=True``), else 1.

    xs: inputs [B, C_j, H_j, W_j] (C_j = ``in_planes[j]``), levels [B]
    → [B, features, *size].
    """

    def __init__(self, in_planes: Sequence[int], features: int, norm: NormFactory, *, end: bool = False) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(RCU(c, 2, 2, norm) for c in in_planes)
        self.msf = MSF(in_planes, features, norm) if len(in_planes) > 1 else None
        self.crp = CRP(features, 2, norm)
        self.out = RCU(features, 3 if end else 1, 2, norm)

    def forward(self, xs: Sequence[Tensor], levels: Tensor, size: tuple[int, int]) -> Tensor:
        hs = [rcu(x, levels) for rcu, x in zip(self.adapt, xs)]
        h = hs[0] if self.msf is None else self.msf(hs, levels, size)
        return self.out(self.crp(h, levels), levels)
