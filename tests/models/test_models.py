"""Score networks: shapes, conditioning, determinism, gradients, the factory, and a DSM known answer."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from ncsn.models import LevelMLP, UNet, build_model, count_parameters
from ncsn.storage.score_model import network_args

SIGMAS = torch.logspace(0, -2, 10)  # σ₁ = 1 … σ_L = 0.01, the paper's schedule
HAS_REFINENET = importlib.util.find_spec("ncsn.models.refinenet") is not None


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    levels = torch.randint(0, len(SIGMAS), (shape[0],), generator=g)
    return x, levels


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Add small noise to every parameter, so zero-initialised output layers no longer hide the body."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _dsm(model: nn.Module, x: torch.Tensor, levels: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """½‖σ·s(x + σz, i) + z‖² per example: σ²-weighted denoising score matching."""
    sigma = sigmas[levels].view(-1, *([1] * (x.ndim - 1)))
    z = torch.randn_like(x)
    return 0.5 * (sigma * model(x + sigma * z, levels) + z).pow(2).flatten(1).sum(1)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 28), (1, 32), (3, 32), (1, 64), (3, 64)])
def test_unet_output_shape(channels: int, size: int) -> None:
    model = UNet(channels, size, 8, len(SIGMAS), sigmas=SIGMAS)
    x, levels = _inputs((2, channels, size, size))
    assert model(x, levels).shape == x.shape


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_mlp_output_shape(dim: int) -> None:
    model = LevelMLP(dim, 32, len(SIGMAS), sigmas=SIGMAS)
    x, levels = _inputs((7, dim))
    assert model(x, levels).shape == x.shape


def test_unet_rejects_size_not_divisible_by_4() -> None:
    with pytest.raises(ValueError, match="image size 30 is not divisible by 4"):
        UNet(1, 30, 8, len(SIGMAS), sigmas=SIGMAS)
    UNet(1, 30, 8, len(SIGMAS), sigmas=SIGMAS, mults=(0.5, 1.0))  # two resolutions: 30 → 15


def test_unet_widths_follow_mults_and_attention_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    plain = UNet(1, 28, 32, len(SIGMAS), sigmas=SIGMAS, mults=(0.25, 1.0, 3.0))
    torch.manual_seed(0)
    attn = UNet(1, 28, 32, len(SIGMAS), sigmas=SIGMAS, mults=(0.25, 1.0, 3.0), attention=True)
    assert [b.conv2.out_channels for b in plain.enc] == [8, 32, 96]
    assert plain.attn is None and attn.attn is not None
    # the attention block is built after everything else, and its output projection starts at zero:
    # the two networks compute the same function until it trains
    x, levels = torch.rand(3, 1, 28, 28), torch.tensor([0, 4, 9])
    torch.nn.init.normal_(plain.conv_out.weight)
    attn.conv_out.weight.data.copy_(plain.conv_out.weight)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, levels), plain(x, levels))
    assert len(list(attn.attn.parameters())) == 6  # norm, qkv, proj: weight and bias each


@pytest.mark.parametrize("model", [
    UNet(1, 28, 8, len(SIGMAS), sigmas=SIGMAS),
    LevelMLP(2, 16, len(SIGMAS), sigmas=SIGMAS),
], ids=["unet", "mlp"])
def test_initial_score_is_zero(model: nn.Module) -> None:
    x, levels = _inputs((3, 1, 28, 28) if isinstance(model, UNet) else (3, 2))
    assert torch.equal(model(x, levels), torch.zeros_like(x))


@pytest.mark.parametrize("make,shape", [
    (lambda: UNet(1, 28, 8, len(SIGMAS), sigmas=SIGMAS), (4, 1, 28, 28)),
    (lambda: LevelMLP(2, 16, len(SIGMAS), sigmas=SIGMAS), (4, 2)),
], ids=["unet", "mlp"])
def test_level_matters_beyond_the_one_over_sigma_scaling(make, shape) -> None:
    torch.manual_seed(0)
    model = _perturb(make())
    x, _ = _inputs(shape)
    scaled = [SIGMAS[i] * model(x, torch.full((shape[0],), i)) for i in (0, 4, 9)]  # σ_i·s(x, i)
    assert not torch.allclose(scaled[0], scaled[1], atol=1e-4)
    assert not torch.allclose(scaled[1], scaled[2], atol=1e-4)


@pytest.mark.parametrize("arch,channels,size", [("unet", 1, 28), ("mlp", 2, 0)])
def test_same_seed_same_model_and_outputs(arch: str, channels: int, size: int) -> None:
    shape = (3, channels, size, size) if size else (3, channels)
    x, levels = _inputs(shape)
    outputs, states = [], []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        model = build_model(arch, ngf=8, channels=channels, image_size=size, sigmas=SIGMAS)
        states.append(model.state_dict())
        outputs.append(_perturb(model)(x, levels))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert torch.equal(outputs[0], outputs[1])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


@pytest.mark.parametrize("model,shape", [
    (UNet(1, 28, 8, len(SIGMAS), sigmas=SIGMAS), (8, 1, 28, 28)),
    (UNet(3, 32, 8, len(SIGMAS), sigmas=SIGMAS), (4, 3, 32, 32)),
    (LevelMLP(2, 16, len(SIGMAS), sigmas=SIGMAS), (16, 2)),
], ids=["unet1x28", "unet3x32", "mlp"])
def test_gradients_reach_every_parameter(model: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    _perturb(model)
    x, _ = _inputs(shape)
    levels = torch.arange(shape[0]) % len(SIGMAS)  # every level's conditioning is used
    _dsm(model, x, levels, SIGMAS).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_sigmas_travel_in_the_state_dict() -> None:
    torch.manual_seed(0)
    model = _perturb(UNet(1, 28, 8, len(SIGMAS), sigmas=SIGMAS))
    fresh = UNet(1, 28, 8, len(SIGMAS), sigmas=torch.ones(len(SIGMAS)))
    fresh.load_state_dict(model.state_dict())
    x, levels = _inputs((2, 1, 28, 28))
    assert torch.equal(fresh.sigmas, SIGMAS)
    assert torch.equal(fresh(x, levels), model(x, levels))


def test_count_parameters_known_answer() -> None:
    # embedding 64→4→4: 260 + 20; layer 2→4: 12; its conditioning 4→4: 20; output 4→2: 10.
    model = LevelMLP(2, 4, 1, sigmas=torch.ones(1), depth=1)
    assert count_parameters(model) == 280 + 12 + 20 + 10  # the sigmas buffer is not counted


def test_unconditional_mlp_is_plain_score_model() -> None:
    model = _perturb(LevelMLP(2, 16, 1, sigmas=torch.ones(1)))
    x = torch.randn(5, 2)
    assert model(x, torch.zeros(5, dtype=torch.long)).shape == (5, 2)


def test_factory_builds_each_small_arch() -> None:
    unet = build_model("unet", ngf=8, channels=3, image_size=32, sigmas=SIGMAS)
    mlp = build_model("mlp", ngf=16, channels=2, image_size=0, sigmas=SIGMAS)
    assert isinstance(unet, UNet) and unet.channels == 3
    assert isinstance(mlp, LevelMLP) and mlp.out.out_features == 2


def test_factory_rejects_unknown_arch() -> None:
    with pytest.raises(ValueError, match=r"'resnet'.*'ncsn', 'ncsnv2', 'unet', 'mlp'"):
        build_model("resnet", ngf=8, channels=1, image_size=28, sigmas=SIGMAS)


@pytest.mark.skipif(not HAS_REFINENET, reason="ncsn/models/refinenet.py not written yet")
@pytest.mark.parametrize("arch", ["ncsn", "ncsnv2"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_factory_paper_networks(arch: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = _perturb(build_model(arch, ngf=8, channels=channels, image_size=size, sigmas=SIGMAS))
    x, _ = _inputs((2, channels, size, size))
    first, last = model(x, torch.zeros(2, dtype=torch.long)), model(x, torch.full((2,), len(SIGMAS) - 1))
    assert first.shape == x.shape and torch.isfinite(first).all()
    assert not torch.allclose(first, last)


@pytest.fixture
def one_thread():
    """Small MLP batches run faster (and steadier on a shared machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_dsm_trained_mlp_matches_exact_gaussian_score(one_thread: None) -> None:
    """On N(μ, s²I) the DSM optimum at level σ is the perturbed score −(x − μ)/(s² + σ²)."""
    torch.manual_seed(0)
    mu, s = torch.tensor([1.0, -2.0]), 0.5
    sigmas = torch.tensor([2.0, 1.0, 0.5, 0.25])
    model = LevelMLP(2, 64, len(sigmas), sigmas=sigmas)

    def relative_error(i: int) -> float:
        g = torch.Generator().manual_seed(i)
        x = mu + (s**2 + sigmas[i] ** 2).sqrt() * torch.randn(2000, 2, generator=g)  # x ~ p_σ
        exact = -(x - mu) / (s**2 + sigmas[i] ** 2)
        with torch.no_grad():
            est = model(x, torch.full((2000,), i))
        return ((est - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean()).item()

    assert min(relative_error(i) for i in range(len(sigmas))) > 0.5  # untrained: far off
    steps = 200
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / steps)
    for _ in range(steps):
        x = mu + s * torch.randn(256, 2)
        levels = torch.randint(0, len(sigmas), (256,))
        loss = _dsm(model, x, levels, sigmas).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    errors = [relative_error(i) for i in range(len(sigmas))]
    assert max(errors) < 0.02, errors


def test_a_checkpoint_of_a_wider_network_with_attention_loads_back_as_written(tmp_path) -> None:
    from ncsn.storage.checkpoint import FORMAT, atomic_save
    from ncsn.config import config_from_dict
    from ncsn.config.composition import compose_params
    from ncsn.storage.score_model import load_score_model

    cfg = config_from_dict(compose_params(["model.mults=[0.25,1,3]", "model.attention=true", "model.precond=edm"]))
    torch.manual_seed(0)
    net = build_model(**network_args(cfg.model), channels=1, image_size=28, sigmas=SIGMAS)
    for p in net.parameters():  # every weight, the zero-initialised ones included, takes part
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "model.pt"
    atomic_save({"format": FORMAT, "config": cfg.to_dict(), "sigmas": SIGMAS, "data": {"channels": 1, "image_size": 28},
                 "model": net.state_dict(), "ema": None, "step": 1}, path)
    loaded = load_score_model(path)
    assert loaded.net.attn is not None and [b.conv2.out_channels for b in loaded.net.enc] == [8, 32, 96]
    x, levels = torch.rand(2, 1, 28, 28), torch.tensor([0, 9])
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x, levels), net.eval()(x, levels))
