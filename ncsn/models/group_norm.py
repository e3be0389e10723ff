"""GroupNorm, a per-channel scale and shift (FiLM) and SiLU in one op, with its backward written out.

For x [B, C, H, W] in G groups of C/G channels, per example b and group g
(N = C/G · H · W values, biased variance, ε = the norm's eps):

    x̂ = (x − μ_bg) · r_bg,   r_bg = 1 / sqrt(σ²_bg + ε)
    z = m_bc · x̂ + o_bc,     y = SiLU(z) = z · sigmoid(z)

where m, o [B, C] fold the norm's affine weights (γ, β) and the FiLM of a residual block
(``GN(h)·(1 + scale) + shift``): m = γ·(1 + scale), o = β·(1 + scale) + shift.

The op is one map z = a·x + b per (b, c), a = m·r, b = o − μ·a, so the forward is two
reductions (Σx and Σx², a single read each), one multiply-add and one SiLU; the unfused
network takes GroupNorm (whose channels-last CPU kernel is several times slower than a
plain sweep), a multiply-add, a SiLU, and autograd's backward of each. The backward, with
dz = dL/dz = dL/dy · SiLU'(z), sums over H, W and ⟨·⟩_g the mean over group g's N values:

    dL/do = Σ dz,   dL/dm = Σ dz · x̂ = r · (Σ dz·x − μ · Σ dz)
    dL/dx = a · dz + c₁ · x + c₂,   c₁ = −r² · v,   c₂ = r · (r · v · μ − u),
    u = ⟨m · dz⟩_g = Σ_c m · Σ dz / N,   v = ⟨m · dz · x̂⟩_g = Σ_c m · dL/dm / N

(the GroupNorm backward dx = r · (dx̂ − ⟨dx̂⟩ − x̂ · ⟨dx̂ · x̂⟩) with dx̂ = m · dz): three
full-size sweeps (SiLU', Σ dz·x, the two multiply-adds) instead of about ten.

Exactness: σ² = ⟨x²⟩ − μ² loses digits when |μ| ≫ σ; the sums are pairwise, so for
μ² ≤ 16 σ² it stays within ≈ 10⁻⁶ of the float64 value. Beyond that (checked on the [B, G]
statistics, never seen in the U-Net) the op centres x by μ first and works on x − μ
(two-pass variance), which is more accurate than the library's channels-last GroupNorm (one pass).
First derivatives only: a double backward raises (as ``normalization._AffineInstanceNorm``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

ILL_CONDITIONED = 16.0  # μ² > 16·σ²: the two-pass variance


def _per_group(v: Tensor, groups: int) -> Tensor:
    """[B, C] → [B, G]: the sum over each group's channels."""
    return v.view(v.shape[0], groups, -1).sum(dim=2)


def _per_channel(v: Tensor, channels: int) -> Tensor:
    """[B, G] → [B, C]: each group's value for each of its channels."""
    batch, groups = v.shape
    return v[:, :, None].expand(batch, groups, channels // groups).reshape(batch, channels)


def _bc(v: Tensor) -> Tensor:
    """[B, C] → [B, C, 1, 1], to broadcast over H, W."""
    return v[:, :, None, None]


class _GroupNormSiLU(torch.autograd.Function):
    """y = SiLU(m · GN(x) + o), GroupNorm without weights; m, o [B, C]. See the module docstring."""

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor, o: Tensor, groups: int, eps: float) -> Tensor:
        batch, channels, height, width = x.shape
        n = channels // groups * height * width
        mean = _per_group(x.sum(dim=(2, 3)), groups) / n  # μ: [B, G]
        var = _per_group((x * x).sum(dim=(2, 3)), groups) / n - mean * mean
        if bool((mean * mean > ILL_CONDITIONED * var).any()):
            x = x - _bc(_per_channel(mean, channels))  # centred: from here on x means x − μ
            var = _per_group((x * x).sum(dim=(2, 3)), groups) / n
            mean = torch.zeros_like(mean)
        rstd = torch.rsqrt(var.clamp_min(0) + eps)  # r: [B, G]
        a = m * _per_channel(rstd, channels)
        z = torch.addcmul(_bc(o - _per_channel(mean, channels) * a), x, _bc(a))
        ctx.groups = groups
        ctx.save_for_backward(x, z, m, mean, rstd)
        return F.silu(z)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, z, m, mean, rstd = ctx.saved_tensors
        groups = ctx.groups
        batch, channels, height, width = x.shape
        n = channels // groups * height * width
        dz = torch.ops.aten.silu_backward(grad, z)
        grad_o = dz.sum(dim=(2, 3))  # Σ dz: [B, C]
        rstd_c, mean_c = _per_channel(rstd, channels), _per_channel(mean, channels)
        grad_m = rstd_c * ((dz * x).sum(dim=(2, 3)) - mean_c * grad_o)  # Σ dz·x̂: [B, C]
        grad_x = None
        if ctx.needs_input_grad[0]:
            u = _per_group(m * grad_o, groups) / n  # [B, G]
            v = _per_group(m * grad_m, groups) / n
            c1 = -rstd * rstd * v
            c2 = rstd * (rstd * v * mean - u)
            grad_x = torch.addcmul(_bc(_per_channel(c2, channels)), dz, _bc(m * rstd_c))
            grad_x.addcmul_(x, _bc(_per_channel(c1, channels)))
        return (grad_x, grad_m if ctx.needs_input_grad[1] else None, grad_o if ctx.needs_input_grad[2] else None,
                None, None)


def fusable(x: Tensor) -> bool:
    """Whether :func:`group_norm_silu` takes the fused op for ``x``: float32 on a CPU, not inside torch.compile.

    On a GPU the library's GroupNorm and SiLU kernels are not the bottleneck and stay as they
    are (so a GPU run computes what it always did); under bf16 autocast the convolutions hand
    over bf16 tensors, which the plain ops handle; ``torch.compile`` fuses the plain ops itself.
    """
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.compiler.is_compiling()


def group_norm_silu(norm: nn.GroupNorm, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
                    *, fused: bool = True) -> Tensor:
    """SiLU(norm(x)), or SiLU(norm(x) · (1 + scale) + shift) with FiLM ``scale``, ``shift``.

    ``fused`` (and :func:`fusable`): one op with the backward written out (``_GroupNormSiLU``),
    equal to the plain ops within float32 rounding; otherwise the plain ops, exactly as
    ``ncsn.models.unet`` wrote them before the fused op (bit for bit). Any layout of ``x``; the
    output keeps it (channels-last in, channels-last out).

    :param norm: the GroupNorm (its groups, eps and, when affine, weight and bias).
    :param x: [B, C, H, W].
    :param scale: / :param shift: [B, C] each, or both None.
    :return: [B, C, H, W].
    """
    assert (scale is None) == (shift is None), "scale and shift come together"
    if not (fused and fusable(x)):
        h = norm(x)
        if scale is not None:
            h = torch.addcmul(_bc(shift), h, 1 + _bc(scale))
        return F.silu(h)
    batch, channels = x.shape[:2]
    if norm.affine:
        m, o = norm.weight.expand(batch, channels), norm.bias.expand(batch, channels)
        if scale is not None:
            m, o = m * (1 + scale), torch.addcmul(shift, o, 1 + scale)
    elif scale is not None:
        m, o = 1 + scale, shift
    else:
        m, o = x.new_ones(batch, channels), x.new_zeros(batch, channels)
    return _GroupNormSiLU.apply(x, m, o, norm.num_groups, norm.eps)
