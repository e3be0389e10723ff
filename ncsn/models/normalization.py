"""Instance normalisation++: the paper's conditional normaliser and NCSNv2's unconditional one.

Plain instance normalisation removes each channel's spatial mean μ_k, so an
image's colour shift (the relative means of its channels) is lost. IN++ adds it
back through μ̃_k, the channel means standardised across channels:

    μ̃_k = (μ_k − mean_j μ_j) / sqrt(var_j μ_j + ε)      (unbiased var over the C channels)
    IN(x)_k = (x_k − μ_k) / sqrt(s²_k + ε)                (s²_k: biased spatial variance)

and per channel k, for noise level i (NCSN paper, CondIN++):

    out_k = γ[i,k] · (IN(x)_k + α[i,k] · μ̃_k) + β[i,k]

The unconditional form (NCSNv2) uses one γ, α, β for every level. ε = 1e−5.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

EPS = 1e-5


class _AffineInstanceNorm(torch.autograd.Function):
    """out = a · (x − μ) + b with a = γ/sqrt(s² + ε): instance norm and a per-channel affine map in one op.

    μ is an input (the caller computes it, so that autograd carries the gradient of
    everything else built on μ back to x) and must be the spatial mean of x; s² is
    computed here from the centred values (two-pass, as accurate as ``F.instance_norm``).
    The backward is the closed form: with ĝ = dL/dout, x̂ = (x − μ)/sqrt(s² + ε),
    N = H·W and sums over H, W,

        dL/dx = a · (ĝ − x̂ · Σ(ĝ x̂)/N),   dL/dμ = −a · Σĝ,   dL/dγ = Σ(ĝ x̂),   dL/db = Σĝ

    (dL/dμ through s² vanishes at the mean). It reads x and ĝ a few times instead of the
    dozen passes autograd takes through the same formula written with elementary ops.
    First derivatives only: a double backward (e.g. sliced score matching through this
    network) raises instead of returning a wrong second derivative.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mean: Tensor, gamma: Tensor, shift: Tensor, eps: float) -> Tensor:
        n = x.shape[2] * x.shape[3]
        mu = mean[:, :, None, None]
        centred = x - mu
        rstd = torch.rsqrt(torch.linalg.vector_norm(centred, dim=(2, 3)).square() / n + eps)  # [B, C]
        scale = gamma * rstd
        ctx.save_for_backward(x, mean, rstd, gamma)
        return torch.addcmul(shift[:, :, None, None], centred, scale[:, :, None, None])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, mean, rstd, gamma = ctx.saved_tensors
        n = x.shape[2] * x.shape[3]
        grad_sum = grad.sum(dim=(2, 3))  # Σĝ: [B, C]
        grad_xhat = ((grad * x).sum(dim=(2, 3)) - mean * grad_sum) * rstd  # Σ ĝ x̂: [B, C]
        scale = gamma * rstd  # a
        grad_x = grad_mean = grad_gamma = None
        if ctx.needs_input_grad[0]:
            # a·ĝ − (a·rstd·Σĝx̂/N)·(x − μ), written as a·ĝ + c·x + d
            c = -scale * rstd * grad_xhat / n
            grad_x = torch.addcmul((-c * mean)[:, :, None, None], grad, scale[:, :, None, None])
            grad_x.addcmul_(x, c[:, :, None, None])
        if ctx.needs_input_grad[1]:
            grad_mean = -scale * grad_sum
        if ctx.needs_input_grad[2]:
            grad_gamma = grad_xhat
        return grad_x, grad_mean, grad_gamma, grad_sum, None


def instance_norm_plus(x: Tensor, gamma: Tensor, alpha: Tensor, beta: Tensor, eps: float = EPS) -> Tensor:
    """out = γ · (IN(x) + α · μ̃) + β, computed as one per-channel affine map of x: (x − μ) · a + b.

    a = γ / sqrt(s² + ε) and b = γ · α · μ̃ + β: everything but the map itself acts on
    [B, C] values, so the full tensor goes through a mean, one subtraction, a sum of
    squares of the centred values (two-pass variance) and one fused multiply-add.
    The backward of that map is written out (``_AffineInstanceNorm``). The reference
    evaluates the formula literally (instance norm, then h + α·μ̃, then γ·h + β, each
    a pass; see bench/baseline_ncsn.py). ``torch.var_mean`` over H, W gives the same
    statistics but is several times slower on CPUs. Works for NCHW and channels-last
    ``x``; the output keeps the layout of ``x``.

    :param x: [B, C, H, W] features (C ≥ 2: μ̃ standardises across channels).
    :param gamma: [B, C] or [C] scales γ.
    :param alpha: [B, C] or [C] weights α of the standardised channel means.
    :param beta: [B, C] or [C] offsets β.
    :return: [B, C, H, W].
    """
    batch, channels = x.shape[:2]
    mean = x.mean(dim=(2, 3))  # μ: [B, C]
    spread, centre = torch.var_mean(mean, dim=1, keepdim=True)  # across channels, unbiased: [B, 1]
    means_std = (mean - centre) * torch.rsqrt(spread + eps)  # μ̃: [B, C]
    gamma = gamma.expand(batch, channels)
    shift = gamma * alpha * means_std + beta  # b: [B, C]
    return _AffineInstanceNorm.apply(x, mean, gamma, shift, eps)


class ConditionalInstanceNorm2dPlus(nn.Module):
    """CondIN++: out = γ[i,k] · (IN(x)_k + α[i,k] · μ̃_k) + β[i,k] for level i = ``levels[b]``.

    γ, α, β are rows of one embedding table [L, 3C] (columns γ | α | β);
    γ and α start at N(1, 0.02²), β at 0.
    """

    def __init__(self, num_features: int, num_levels: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.embed = nn.Embedding(num_levels, 3 * num_features)
        with torch.no_grad():
            self.embed.weight[:, : 2 * num_features].normal_(1.0, 0.02)
            self.embed.weight[:, 2 * num_features :].zero_()

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        """:param x: [B, C, H, W]. :param levels: [B] int64 in 0..L−1. :return: [B, C, H, W]."""
        gamma, alpha, beta = self.embed(levels).chunk(3, dim=1)  # [B, C] each
        return instance_norm_plus(x, gamma, alpha, beta)


class InstanceNorm2dPlus(nn.Module):
    """IN++ without level conditioning (NCSNv2): out = γ_k · (IN(x)_k + α_k · μ̃_k) + β_k.

    γ and α start at N(1, 0.02²), β at 0. ``forward`` accepts and ignores
    ``levels`` so that it can stand in for :class:`ConditionalInstanceNorm2dPlus`.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.gamma = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.alpha = nn.Parameter(torch.empty(num_features).normal_(1.0, 0.02))
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, levels: Tensor | None = None) -> Tensor:
        """:param x: [B, C, H, W]. :param levels: ignored. :return: [B, C, H, W]."""
        return instance_norm_plus(x, self.gamma, self.alpha, self.beta)
