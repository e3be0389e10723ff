"""The speed baseline: a plain eager port of the reference NCSN (yang-song/ncsn, CondRefineNetDilated).

This is the network as the reference code computes it, op for op:

* CondIN++ (reference ``ConditionalInstanceNorm2dPlus``): ``nn.InstanceNorm2d``, then
  h + α·μ̃, then γ·h + β, each a separate pass over the full tensor, with μ̃ from
  ``torch.mean`` and ``torch.var`` of the channel means;
* ELU as its own module call; the mean pooling of the downsampling block
  (reference ``ConvMeanPool``) as the sum of four strided slices divided by 4;
* the multi-resolution fusion starts from a zero tensor and adds every resized path;
* NCHW (contiguous) memory layout, no ``torch.compile``, no ``inference_mode``.

Module and parameter names are those of :class:`ncsn.models.refinenet.NCSN`, so both load
the same state dict and ``tests/models/test_fast_path.py`` can check that they compute the same
function. Only the conditional (paper) network is ported. Not used by the library.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RefCondInstanceNorm2dPlus(nn.Module):
    """Reference CondIN++: γ[i]·(IN(x) + α[i]·μ̃) + β[i], five passes over x."""

    def __init__(self, num_features: int, num_levels: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.instance_norm = nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)
        self.embed = nn.Embedding(num_levels, 3 * num_features)
        self.embed.weight.data[:, : 2 * num_features].normal_(1, 0.02)
        self.embed.weight.data[:, 2 * num_features:].zero_()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        means = torch.mean(x, dim=(2, 3))
        m = torch.mean(means, dim=-1, keepdim=True)
        v = torch.var(means, dim=-1, keepdim=True)
        means = (means - m) / (torch.sqrt(v + 1e-5))
        h = self.instance_norm(x)
        gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
        h = h + means[..., None, None] * alpha[..., None, None]
        return gamma.view(-1, self.num_features, 1, 1) * h + beta.view(-1, self.num_features, 1, 1)


def _conv3x3(in_ch: int, out_ch: int, dilation: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=dilation, dilation=dilation, bias=bias)


def _mean_pool(x: Tensor) -> Tensor:
    """Reference ``ConvMeanPool`` after its conv: the average of the four 2×2 phases."""
    return sum([x[:, :, ::2, ::2], x[:, :, 1::2, ::2], x[:, :, ::2, 1::2], x[:, :, 1::2, 1::2]]) / 4.0


class RefResidualBlock(nn.Module):
    """Reference ``ConditionalResidualBlock`` (resample 'down' or None, optional dilation)."""

    def __init__(self, in_ch: int, out_ch: int, num_levels: int, *, down: bool = False,
                 dilation: int | None = None) -> None:
        super().__init__()
        d = dilation or 1
        mid = in_ch if down else out_ch
        self.pool = down and dilation is None
        self.act = nn.ELU()
        self.norm1 = RefCondInstanceNorm2dPlus(in_ch, num_levels)
        self.conv1 = _conv3x3(in_ch, mid, d)
        self.norm2 = RefCondInstanceNorm2dPlus(mid, num_levels)
        self.conv2 = _conv3x3(mid, out_ch, d)
        self.shortcut = None
        if down or in_ch != out_ch:
            self.shortcut = _conv3x3(in_ch, out_ch, d) if dilation else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        output = self.norm1(x, y)
        output = self.act(output)
        output = self.conv1(output)
        output = self.norm2(output, y)
        output = self.act(output)
        output = self.conv2(output)
        if self.pool:
            output = _mean_pool(output)
        if self.shortcut is None:
            shortcut = x
        else:
            shortcut = self.shortcut(x)
            if self.pool:
                shortcut = _mean_pool(shortcut)
        return shortcut + output


class RefRCU(nn.Module):
    """Reference ``CondRCUBlock``."""

    def __init__(self, features: int, n_blocks: int, n_stages: int, num_levels: int) -> None:
        super().__init__()
        self.n_blocks, self.n_stages = n_blocks, n_stages
        self.act = nn.ELU()
        self.norms = nn.ModuleList(RefCondInstanceNorm2dPlus(features, num_levels) for _ in range(n_blocks * n_stages))
        self.convs = nn.ModuleList(_conv3x3(features, features, bias=False) for _ in range(n_blocks * n_stages))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        for i in range(self.n_blocks):
            residual = x
            for j in range(self.n_stages):
                k = i * self.n_stages + j
                x = self.norms[k](x, y)
                x = self.act(x)
                x = self.convs[k](x)
            x = x + residual
        return x


class RefCRP(nn.Module):
    """Reference ``CondCRPBlock`` (5×5 average pooling, stride 1, padding 2)."""

    def __init__(self, features: int, n_stages: int, num_levels: int) -> None:
        super().__init__()
        self.act = nn.ELU()
        self.norms = nn.ModuleList(RefCondInstanceNorm2dPlus(features, num_levels) for _ in range(n_stages))
        self.convs = nn.ModuleList(_conv3x3(features, features, bias=False) for _ in range(n_stages))
        self.pool = nn.AvgPool2d(kernel_size=5, stride=1, padding=2)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x = self.act(x)
        path = x
        for norm, conv in zip(self.norms, self.convs):
            path = norm(path, y)
            path = self.pool(path)
            path = conv(path)
            x = path + x
        return x


class RefMSF(nn.Module):
    """Reference ``CondMSFBlock``."""

    def __init__(self, in_planes: Sequence[int], features: int, num_levels: int) -> None:
        super().__init__()
        self.features = features
        self.norms = nn.ModuleList(RefCondInstanceNorm2dPlus(c, num_levels) for c in in_planes)
        self.convs = nn.ModuleList(_conv3x3(c, features) for c in in_planes)

    def forward(self, xs: Sequence[Tensor], y: Tensor, shape: Sequence[int]) -> Tensor:
        sums = torch.zeros(xs[0].shape[0], self.features, *shape, device=xs[0].device, dtype=xs[0].dtype)
        for x, norm, conv in zip(xs, self.norms, self.convs):
            h = conv(norm(x, y))
            h = F.interpolate(h, size=tuple(shape), mode="bilinear", align_corners=True)
            sums = sums + h
        return sums


class RefRefineBlock(nn.Module):
    """Reference ``CondRefineBlock``."""

    def __init__(self, in_planes: Sequence[int], features: int, num_levels: int, *, end: bool = False) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(RefRCU(c, 2, 2, num_levels) for c in in_planes)
        self.msf = RefMSF(in_planes, features, num_levels) if len(in_planes) > 1 else None
        self.crp = RefCRP(features, 2, num_levels)
        self.out = RefRCU(features, 3 if end else 1, 2, num_levels)

    def forward(self, xs: Sequence[Tensor], y: Tensor, shape: Sequence[int]) -> Tensor:
        hs = [rcu(x, y) for rcu, x in zip(self.adapt, xs)]
        h = hs[0] if self.msf is None else self.msf(hs, y, shape)
        h = self.crp(h, y)
        return self.out(h, y)


class BaselineNCSN(nn.Module):
    """Reference ``CondRefineNetDilated``: same layout and state-dict keys as ``ncsn.models.NCSN``."""

    def __init__(self, channels: int, image_size: int, ngf: int, num_levels: int, *,
                 sigmas: Tensor | None = None) -> None:
        super().__init__()
        if sigmas is not None:
            self.register_buffer("sigmas", sigmas.detach().clone().float())
        w1, w2, L = ngf, 2 * ngf, num_levels
        self.act = nn.ELU()
        self.begin_conv = nn.Conv2d(channels, w1, 3, stride=1, padding=1)
        self.res1 = nn.ModuleList([RefResidualBlock(w1, w1, L), RefResidualBlock(w1, w1, L)])
        self.res2 = nn.ModuleList([RefResidualBlock(w1, w2, L, down=True), RefResidualBlock(w2, w2, L)])
        self.res3 = nn.ModuleList([RefResidualBlock(w2, w2, L, down=True, dilation=2),
                                   RefResidualBlock(w2, w2, L, dilation=2)])
        self.res4 = nn.ModuleList([RefResidualBlock(w2, w2, L, down=True, dilation=4),
                                   RefResidualBlock(w2, w2, L, dilation=4)])
        self.refine1 = RefRefineBlock([w2], w2, L)
        self.refine2 = RefRefineBlock([w2, w2], w2, L)
        self.refine3 = RefRefineBlock([w2, w2], w1, L)
        self.refine4 = RefRefineBlock([w1, w1], w1, L, end=True)
        self.norm_out = RefCondInstanceNorm2dPlus(w1, L)
        self.end_conv = nn.Conv2d(w1, channels, 3, stride=1, padding=1)

    @staticmethod
    def _run(layer: nn.ModuleList, x: Tensor, y: Tensor) -> Tensor:
        for module in layer:
            x = module(x, y)
        return x

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = 2 * x - 1.0
        output = self.begin_conv(h)
        layer1 = self._run(self.res1, output, y)
        layer2 = self._run(self.res2, layer1, y)
        layer3 = self._run(self.res3, layer2, y)
        layer4 = self._run(self.res4, layer3, y)
        ref1 = self.refine1([layer4], y, layer4.shape[2:])
        ref2 = self.refine2([layer3, ref1], y, layer3.shape[2:])
        ref3 = self.refine3([layer2, ref2], y, layer2.shape[2:])
        output = self.refine4([layer1, ref3], y, layer1.shape[2:])
        output = self.norm_out(output, y)
        output = self.act(output)
        return self.end_conv(output)
