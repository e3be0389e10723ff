"""The paper's score network (``ncsn.models.refinenet.NCSN``) and its instance norms++."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ncsn.models.normalization import ConditionalInstanceNorm2dPlus, InstanceNorm2dPlus
from ncsn.models.refinenet import CondRefineNetDilated, NCSN

SIGMAS = torch.logspace(0, -2, 10)  # the paper's σ₁ = 1 … σ_L = 0.01, L = 10


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _perturb(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Move every parameter off its initial value (CondIN++ rows start nearly equal across levels)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _in_plus_by_definition(x: torch.Tensor, gamma: torch.Tensor, alpha: torch.Tensor,
                           beta: torch.Tensor) -> torch.Tensor:
    """γ·(IN(x) + α·μ̃) + β written out step by step; γ, α, β: [B, C]."""
    mu = x.mean(dim=(2, 3))  # [B, C]
    mu_tilde = (mu - mu.mean(1, keepdim=True)) / torch.sqrt(mu.var(1, keepdim=True) + 1e-5)
    h = F.instance_norm(x, eps=1e-5) + (alpha * mu_tilde)[:, :, None, None]
    return gamma[:, :, None, None] * h + beta[:, :, None, None]


# --- parameter counts (construction only) -------------------------------------------------------------


@pytest.mark.parametrize("channels,size,ngf,expected", [(1, 28, 64, 7_638_657), (3, 32, 128, 30_117_635)])
def test_parameter_count_matches_reference(channels: int, size: int, ngf: int, expected: int) -> None:
    assert _count(NCSN(channels, size, ngf, 10)) == expected


def test_unconditional_variant_has_one_row_of_norm_parameters() -> None:
    """Each IN++ keeps 3C parameters instead of CondIN++'s 3C·L; everything else is shared."""
    cond, uncond = NCSN(1, 28, 8, 10), NCSN(1, 28, 8, 10, sigmas=SIGMAS, conditional=False)
    norm_features = sum(m.num_features for m in cond.modules() if isinstance(m, ConditionalInstanceNorm2dPlus))
    assert _count(cond) - _count(uncond) == 3 * norm_features * (10 - 1)
    assert not any(isinstance(m, ConditionalInstanceNorm2dPlus) for m in uncond.modules())


# --- the normalisers ----------------------------------------------------------------------------------


def test_conditional_instance_norm_plus_matches_its_equation() -> None:
    torch.manual_seed(0)
    norm = _perturb(ConditionalInstanceNorm2dPlus(6, num_levels=4), scale=0.5)
    x = 3.0 + 2.0 * torch.randn(5, 6, 7, 9)
    levels = torch.tensor([0, 3, 1, 3, 2])
    gamma, alpha, beta = norm.embed.weight[levels].chunk(3, dim=1)
    torch.testing.assert_close(norm(x, levels), _in_plus_by_definition(x, gamma, alpha, beta), rtol=1e-5, atol=1e-5)


def test_instance_norm_plus_matches_its_equation_and_ignores_levels() -> None:
    torch.manual_seed(0)
    norm = _perturb(InstanceNorm2dPlus(6), scale=0.5)
    x = torch.randn(3, 6, 8, 8) - 1.0
    expand = lambda p: p.expand(3, 6)  # noqa: E731
    expected = _in_plus_by_definition(x, expand(norm.gamma), expand(norm.alpha), expand(norm.beta))
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm(x, torch.tensor([0, 1, 2])), norm(x))


def test_norm_initialisation() -> None:
    """γ, α ~ N(1, 0.02²) and β = 0; a constant channel gives finite output and gradients."""
    torch.manual_seed(0)
    norm = ConditionalInstanceNorm2dPlus(256, num_levels=10)
    gamma, alpha, beta = norm.embed.weight.detach().chunk(3, dim=1)
    for p in (gamma, alpha):
        assert abs(p.mean().item() - 1.0) < 0.005 and abs(p.std().item() - 0.02) < 0.003
    assert torch.equal(beta, torch.zeros_like(beta))
    x = torch.randn(2, 256, 4, 4)
    x[:, 0] = 5.0
    x.requires_grad_(True)
    out = norm(x, torch.tensor([0, 9]))
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


# --- the network --------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 64)])
def test_output_shape(channels: int, size: int, conditional: bool) -> None:
    torch.manual_seed(0)
    model = NCSN(channels, size, 8, 10, sigmas=SIGMAS, conditional=conditional)
    x = _images((2, channels, size, size))
    with torch.no_grad():
        out = model(x, torch.tensor([0, 9]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_level_conditioning_changes_the_output() -> None:
    torch.manual_seed(0)
    model = _perturb(NCSN(1, 28, 8, 10))
    x = _images((1, 1, 28, 28)).expand(3, -1, -1, -1)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 5, 0]))
    torch.testing.assert_close(out[0], out[2])
    assert (out[0] - out[1]).abs().max() > 1e-2


def test_unconditional_variant_divides_by_sigma() -> None:
    """σ_i · s_θ(x, i) does not depend on i: outputs differ exactly by the ratio of the σ's."""
    torch.manual_seed(0)
    model = _perturb(NCSN(3, 32, 8, 10, sigmas=SIGMAS, conditional=False))
    x = _images((1, 3, 32, 32)).expand(3, -1, -1, -1)
    levels = torch.tensor([0, 4, 9])
    with torch.no_grad():
        out = model(x, levels)
    torch.testing.assert_close(out[1], out[0] * SIGMAS[0] / SIGMAS[4])
    torch.testing.assert_close(out[2], out[0] * SIGMAS[0] / SIGMAS[9])
    assert out[0].abs().max() > 1e-3


def test_unconditional_variant_requires_sigmas() -> None:
    with pytest.raises(ValueError, match="sigmas"):
        NCSN(1, 28, 8, 10, conditional=False)
    with pytest.raises(ValueError, match=r"shape \[10\]"):
        NCSN(1, 28, 8, 10, sigmas=SIGMAS[:5])


def test_sigmas_are_a_buffer_that_follows_the_module() -> None:
    model = NCSN(1, 28, 8, 10, sigmas=SIGMAS.double(), conditional=False)
    assert "sigmas" in dict(model.named_buffers()) and "sigmas" in model.state_dict()
    assert model.sigmas.dtype == torch.float32
    assert all(p is not model.sigmas for p in model.parameters())


def test_rescale_maps_inputs_to_minus_one_one() -> None:
    torch.manual_seed(0)
    rescaled = _perturb(NCSN(1, 28, 8, 10))
    raw = NCSN(1, 28, 8, 10, rescale=False)
    raw.load_state_dict(rescaled.state_dict())
    x, levels = _images((2, 1, 28, 28)), torch.tensor([1, 7])
    with torch.no_grad():
        torch.testing.assert_close(rescaled(x, levels), raw(2 * x - 1, levels))


def test_deterministic() -> None:
    x, levels = _images((2, 3, 32, 32)), torch.tensor([2, 8])
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = NCSN(3, 32, 8, 10)
        with torch.no_grad():
            outs.append(model(x, levels))
            outs.append(model(x, levels))
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("conditional", [True, False])
def test_gradients_flow_to_every_parameter_and_the_input(conditional: bool) -> None:
    torch.manual_seed(0)
    model = _perturb(NCSN(1, 28, 8, 10, sigmas=SIGMAS, conditional=conditional))
    x = _images((2, 1, 28, 28)).requires_grad_(True)
    levels = torch.tensor([3, 6])
    model(x, levels).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
        if conditional and name.endswith("embed.weight"):  # only the rows of the levels used
            unused = [i for i in range(10) if i not in (3, 6)]
            assert torch.equal(p.grad[unused], torch.zeros_like(p.grad[unused])), name


def test_device_and_dtype_follow_the_module() -> None:
    model = NCSN(1, 28, 8, 10, sigmas=SIGMAS, conditional=False).double()
    out = model(_images((1, 1, 28, 28)).double(), torch.tensor([0]))
    assert out.dtype == torch.float64


def test_the_reference_name_finds_the_paper_network() -> None:
    """``CondRefineNetDilated`` (ermongroup/ncsn) is this network, with the same state-dict keys."""
    assert CondRefineNetDilated is NCSN
    assert CondRefineNetDilated(1, 28, 8, 10).state_dict().keys() == NCSN(1, 28, 8, 10).state_dict().keys()


@pytest.mark.parametrize("channels_last", [False, True])
def test_padded_pool5_is_the_crp_pooling_in_either_layout(channels_last: bool) -> None:
    """padded_pool5 is avg_pool2d(5, stride 1, padding 2, padding counted), values and input gradients,
    and keeps the input's layout (the NCHW detour it takes off the CPU must not change either)."""
    from ncsn.models.layers import padded_pool5

    base = torch.randn(2, 6, 9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = torch.randn(base.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = base.contiguous(memory_format=torch.channels_last) if channels_last else base.clone()
    x.requires_grad_()
    out = padded_pool5(x)
    (out * weights).sum().backward()
    # the definition, written out: the mean over the 5×5 window of the zero-padded input
    padded = F.pad(base, (2, 2, 2, 2))
    expected = sum(padded[:, :, i:i + 9, j:j + 9] for i in range(5) for j in range(5)) / 25
    torch.testing.assert_close(out, expected)
    grad = sum(F.pad(weights, (2, 2, 2, 2))[:, :, i:i + 9, j:j + 9] for i in range(5) for j in range(5)) / 25
    torch.testing.assert_close(x.grad, grad)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
