"""The fast paper network equals the plain eager port of the reference (bench/baseline_ncsn.py).

``ncsn.models.refinenet.NCSN`` folds CondIN++ into one scale and shift per channel,
keeps activations channels-last and skips the reference's separate passes; these tests
check that it still computes the reference's function and gradients (not its speed:
see bench/bench_networks.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ncsn.models.normalization import ConditionalInstanceNorm2dPlus
from ncsn.models.refinenet import NCSN

SIGMAS = torch.logspace(0, -2, 10)
_BENCH = Path(__file__).resolve().parents[2] / "bench" / "baseline_ncsn.py"


def _baseline_module():
    spec = importlib.util.spec_from_file_location("baseline_ncsn", _BENCH)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


baseline = _baseline_module()


def _pair(channels: int, size: int, ngf: int, seed: int = 0) -> tuple[NCSN, torch.nn.Module]:
    """(fast, baseline) with the same perturbed weights (CondIN++ rows made to differ across levels)."""
    torch.manual_seed(seed)
    fast = NCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    ref = baseline.BaselineNCSN(channels, size, ngf, len(SIGMAS), sigmas=SIGMAS)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _inputs(batch: int, channels: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=g), torch.randint(0, len(SIGMAS), (batch,), generator=g)


def test_state_dicts_have_the_same_keys_and_shapes() -> None:
    fast, ref = _pair(1, 28, 8)
    a, b = fast.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)


@pytest.mark.parametrize("channels,size,ngf", [(1, 28, 8), (3, 32, 16)])
def test_forward_equals_the_reference(channels: int, size: int, ngf: int) -> None:
    fast, ref = _pair(channels, size, ngf)
    x, levels = _inputs(4, channels, size)
    with torch.no_grad():
        expected = ref(x, levels)
    with torch.inference_mode():  # the sampler's mode
        out = fast.eval()(x, levels)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_gradients_equal_the_reference() -> None:
    """Parameter and input gradients of the σ²-weighted DSM loss, as in a training step."""
    fast, ref = _pair(1, 28, 8)
    x, levels = _inputs(3, 1, 28)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    sigma = SIGMAS[levels].view(-1, 1, 1, 1)
    grads = []
    for net in (ref, fast):
        xt = (x + sigma * z).requires_grad_(True)
        loss = 0.5 * (sigma * net(xt, levels) + z).pow(2).sum()
        loss.backward()
        grads.append({"input": xt.grad, **{k: p.grad for k, p in net.named_parameters()}})
    expected, got = grads
    for name, g in expected.items():
        scale = g.abs().max().item() + 1e-12
        torch.testing.assert_close(got[name], g, rtol=1e-3, atol=1e-4 * scale, msg=name)


def test_fused_norm_equals_the_reference_norm_on_hard_inputs() -> None:
    """Large channel means, a constant channel and channels-last input: the folded form holds."""
    torch.manual_seed(0)
    fast = ConditionalInstanceNorm2dPlus(6, num_levels=4)
    ref = baseline.RefCondInstanceNorm2dPlus(6, num_levels=4)
    with torch.no_grad():
        fast.embed.weight.normal_(0.5, 0.5)
    ref.load_state_dict(fast.state_dict())
    x = 0.5 * torch.randn(5, 6, 7, 9) + torch.linspace(-20, 20, 6)[None, :, None, None]
    x[:, 2] = 3.0
    levels = torch.tensor([0, 3, 1, 3, 2])
    expected = ref(x, levels)
    torch.testing.assert_close(fast(x, levels), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last), levels), expected,
                               rtol=1e-4, atol=1e-4)


def test_channels_last_is_internal() -> None:
    """Weights are stored channels-last; inputs and outputs stay ordinary NCHW tensors."""
    fast, _ = _pair(1, 28, 8)
    assert fast.begin_conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, levels = _inputs(2, 1, 28)
    with torch.no_grad():
        out = fast(x, levels)
    assert out.is_contiguous()
    plain = NCSN(1, 28, 8, len(SIGMAS), sigmas=SIGMAS, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert plain.begin_conv.weight.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(plain(x, levels), out, rtol=1e-5, atol=1e-5)


def test_second_derivatives_are_refused_not_wrong() -> None:
    """The written-out backward is first-order only: a double backward raises."""
    norm = ConditionalInstanceNorm2dPlus(4, num_levels=2)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(norm(x, torch.tensor([0, 1])).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


def test_exp_based_elu_equals_elu() -> None:
    from ncsn.models.layers import elu

    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, float("inf"), -float("inf")])])
    torch.testing.assert_close(elu(x), torch.nn.functional.elu(x), rtol=0, atol=1e-7)
    assert elu(torch.tensor([float("nan")])).isnan().all()  # a diverging run still shows NaN
    xg = torch.randn(4, 3, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(elu, (xg,))
