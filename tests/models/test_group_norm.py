"""The fused GroupNorm + FiLM + SiLU (ncsn.models.group_norm) equals the plain ops, and the U-Net with it its plain self.

Exactness is measured as the largest difference relative to the largest magnitude of the
plain result, for outputs and for every gradient (input, FiLM scale and shift, GroupNorm
weights, every parameter of the network).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncsn.models.group_norm import fusable, group_norm_silu
from ncsn.models.unet import UNet

RTOL = 1e-5
SIGMAS = torch.logspace(0, -2, 10)
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "smoke_avx2.json"


def _rel(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def _run(norm: nn.GroupNorm, x: torch.Tensor, film: bool, fused: bool, grad: torch.Tensor, seed: int = 0):
    """Output and gradients (x, scale, shift, the norm's weight and bias) of ⟨grad, y⟩."""
    g = torch.Generator().manual_seed(seed)
    x = x.detach().clone().requires_grad_(True)
    scale = (0.3 * torch.randn(x.shape[:2], generator=g)).requires_grad_(True) if film else None
    shift = torch.randn(x.shape[:2], generator=g).requires_grad_(True) if film else None
    norm.zero_grad(set_to_none=True)
    y = group_norm_silu(norm, x, scale, shift, fused=fused)
    (y * grad).sum().backward()
    grads = {"x": x.grad}
    if film:
        grads |= {"scale": scale.grad, "shift": shift.grad}
    if norm.affine:
        grads |= {"weight": norm.weight.grad.clone(), "bias": norm.bias.grad.clone()}
    return y.detach(), grads


@pytest.mark.parametrize("shape,groups,affine,film,channels_last", [
    ((128, 16, 28, 28), 4, False, True, True),   # the cpu profile's 28×28 block, norm2
    ((128, 16, 28, 28), 4, True, False, True),   # norm1 / norm_out
    ((3, 6, 5, 7), 3, True, True, False),        # odd sizes, both affine and FiLM
    ((2, 6, 1, 3), 2, False, False, True),       # neither; one row
    ((4, 5, 3, 3), 1, True, True, True),         # odd channels, one group
    ((5, 12, 9, 4), 12, False, True, False),     # a group per channel (instance norm)
    ((1, 64, 7, 7), 8, True, False, True),
])
def test_fused_equals_plain(shape, groups, affine, film, channels_last) -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(groups, shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.normal_(1.0, 0.3)
            norm.bias.normal_(0.0, 0.3)
    x = 1.7 * torch.randn(shape) + 0.4
    grad = torch.randn(shape)
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    y_plain, g_plain = _run(norm, x, film, False, grad)
    y_fused, g_fused = _run(norm, x, film, True, grad)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y_fused.is_contiguous(memory_format=fmt) and g_fused["x"].is_contiguous(memory_format=fmt)
    assert _rel(y_fused, y_plain) < RTOL
    assert g_fused.keys() == g_plain.keys()
    for name in g_plain:
        assert _rel(g_fused[name], g_plain[name]) < RTOL, name


@pytest.mark.parametrize("offset", [0.0, 30.0, 1000.0])
def test_large_means_match_float64(offset: float) -> None:
    """|μ| ≫ σ (the two-pass branch): the fused op keeps float32 accuracy against a float64 reference."""
    torch.manual_seed(1)
    norm = nn.GroupNorm(2, 8, affine=False)
    x = (torch.randn(3, 8, 6, 6) + offset * torch.linspace(-1, 1, 8)[None, :, None, None]).contiguous(
        memory_format=torch.channels_last)
    grad = torch.randn(x.shape)
    y, g = _run(norm, x, True, True, grad)
    y64, g64 = _run(norm.double(), x.double(), True, False, grad.double())
    tol = RTOL * max(1.0, offset / 10)  # float32 rounding of μ itself: ≈ 6·10⁻⁸ · |μ| / σ
    assert _rel(y.double(), y64) < tol
    for name in g64:
        assert _rel(g[name].double(), g64[name]) < tol, name


def test_the_plain_path_is_the_old_code_bit_for_bit() -> None:
    """fused=False computes exactly what unet.py computed before the fused op."""
    torch.manual_seed(2)
    norm = nn.GroupNorm(4, 16, affine=False)
    h = torch.randn(4, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    scale, shift = torch.randn(4, 32).chunk(2, dim=1)
    old_scale, old_shift = torch.cat([scale, shift], 1)[:, :, None, None].chunk(2, dim=1)
    old = nn.SiLU()(torch.addcmul(old_shift, norm(h), 1 + old_scale))
    assert torch.equal(group_norm_silu(norm, h, scale, shift, fused=False), old)


def test_the_fused_op_is_for_float32_on_a_cpu_only() -> None:
    assert fusable(torch.zeros(1, 2, 3, 3))
    assert not fusable(torch.zeros(1, 2, 3, 3, dtype=torch.bfloat16))
    assert not fusable(torch.zeros(1, 2, 3, 3, device="meta"))  # as a GPU tensor: the plain ops


def test_second_derivatives_are_refused_not_wrong() -> None:
    norm = nn.GroupNorm(2, 4)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    (gx,) = torch.autograd.grad(group_norm_silu(norm, x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()


def _unet_pair(channels_last: bool, attention: bool = False) -> UNet:
    torch.manual_seed(0)
    net = UNet(1, 28, 16, len(SIGMAS), sigmas=SIGMAS, channels_last=channels_last, attention=attention)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the initialisation (the last conv starts at zero)
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("channels_last,attention", [(True, False), (False, True)])
def test_unet_fused_equals_unfused(channels_last: bool, attention: bool) -> None:
    """Same weights: the DSM training step's output, input gradient and every parameter gradient."""
    net = _unet_pair(channels_last, attention)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 1, 28, 28, generator=g)
    levels = torch.randint(0, len(SIGMAS), (6,), generator=g)
    z = torch.randn(x.shape, generator=g)
    sigma = SIGMAS[levels].view(-1, 1, 1, 1)
    results = []
    for fused in (False, True):
        net.fused_norm = fused
        net.zero_grad(set_to_none=True)
        xt = (x + sigma * z).requires_grad_(True)
        out = net(xt, levels)
        (0.5 * (sigma * out + z).pow(2).sum()).backward()
        results.append((out.detach(), {"input": xt.grad, **{k: p.grad for k, p in net.named_parameters()}}))
    (out_plain, g_plain), (out_fused, g_fused) = results
    assert _rel(out_fused, out_plain) < RTOL
    for name, grad in g_plain.items():
        assert _rel(g_fused[name], grad) < RTOL, name


def test_unet_fused_in_eval_and_inference_mode() -> None:
    net = _unet_pair(True).eval()
    net.fused_norm = True
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    levels = torch.arange(4)
    with torch.inference_mode():
        fused = net(x, levels)
        net.fused_norm = False
        plain = net(x, levels)
    assert fused.is_contiguous() and _rel(fused, plain) < RTOL


def test_state_dict_keys_are_those_of_old_checkpoints() -> None:
    """The switch is an attribute, not a buffer: the smoke run's recorded weights still load."""
    recorded = json.loads(GOLDEN.read_text())["model"]
    net = UNet(1, 28, 8, 10, sigmas=SIGMAS)
    assert not net.fused_norm  # off by default: the golden record is of the plain ops
    net.fused_norm = True
    assert set(net.state_dict()) == set(recorded)
