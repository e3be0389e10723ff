"""EDM's preconditioning and loss weighting (ncsn.core.losses.edm): known answers, the UNet, the config rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ncsn.config import DATASETS, ConfigError, load_config
from ncsn.core.losses import dsm_loss
from ncsn.core.losses.edm import edm_level_probs, edm_loss_weight
from ncsn.core.precond import SIGMA_DATA, edm_score
from ncsn.core.losses.weighting import draw_levels, weighted_dsm_loss
from ncsn.models import UNet
from tests.helpers import write_params

SIGMAS = torch.logspace(math.log10(5.0), -2, 40)


def test_zero_correction_is_the_exact_score_of_the_blurred_gaussian() -> None:
    """For data N(½, σ_d² I), p_σ = N(½, (σ_d² + σ²) I): F = 0 is the exact score at every σ."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 4, 4, generator=g)
    sigma = SIGMAS[torch.arange(0, 40, 7)].reshape(-1, 1, 1, 1)
    exact = torch.distributions.Normal(0.5, torch.sqrt(SIGMA_DATA**2 + sigma**2))
    x = x.requires_grad_()
    log_p = exact.log_prob(x).sum()
    (grad,) = torch.autograd.grad(log_p, x)
    torch.testing.assert_close(edm_score(x.detach(), sigma, torch.zeros_like(x)), grad)


def test_weighted_dsm_is_edm_loss_on_the_denoiser_target() -> None:
    """σ² DSM × (σ² + σ_d²)/σ_d² = ½‖F − F_target‖², F_target = (x − c_skip x̃)/c_out about ½ (EDM Eq. 8)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 5, 5, generator=g)
    levels = torch.randint(0, 40, (8,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    f = torch.randn(x.shape, generator=g)
    sigma = SIGMAS[levels].reshape(-1, 1, 1, 1)
    got = dsm_loss(lambda xt, lv: edm_score(xt, sigma, f), x, SIGMAS, levels=levels, noise=noise)
    got = got * edm_loss_weight(SIGMAS[levels])
    x_tilde = x + sigma * noise
    c_skip = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
    c_out = sigma * SIGMA_DATA / torch.sqrt(sigma**2 + SIGMA_DATA**2)
    target = ((x - 0.5) - c_skip * (x_tilde - 0.5)) / c_out
    torch.testing.assert_close(got, 0.5 * (f - target).pow(2).flatten(1).sum(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("mean", "std"), [(-2.0, 1.2), (-0.6, 0.9)])
def test_level_probabilities_follow_the_log_normal_density(mean: float, std: float) -> None:
    probs = edm_level_probs(SIGMAS, mean, std)
    assert probs.shape == (40,)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    assert int(probs.argmax()) == int((SIGMAS.log() - mean).abs().argmin())
    i, j = 3, 20
    ratio = math.exp(-((math.log(SIGMAS[i]) - mean) ** 2 - (math.log(SIGMAS[j]) - mean) ** 2) / (2 * std**2))
    assert float(probs[i] / probs[j]) == pytest.approx(ratio, rel=1e-4)


def test_unet_edm_starts_at_the_gaussian_score_and_ncsnv2_at_zero() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 8, 8, generator=g)
    levels = torch.tensor([0, 5, 20, 39])
    sigma = SIGMAS[levels].reshape(-1, 1, 1, 1)
    torch.manual_seed(0)
    edm = UNet(1, 8, 8, 40, sigmas=SIGMAS, precond="edm")
    torch.manual_seed(0)
    plain = UNet(1, 8, 8, 40, sigmas=SIGMAS)
    torch.testing.assert_close(edm(x, levels), -(x - 0.5) / (sigma**2 + 0.25))
    assert torch.equal(plain(x, levels), torch.zeros_like(x))
    with torch.no_grad():  # the same body and weights: the outputs differ by the preconditioning alone
        for p in [*edm.conv_out.parameters(), *plain.conv_out.parameters()]:
            p.fill_(0.01)
    f = plain(x, levels) * sigma
    torch.testing.assert_close(edm(x, levels), edm_score(x, sigma, f))


def test_unet_rejects_an_unknown_precond() -> None:
    with pytest.raises(ValueError, match="precond"):
        UNet(1, 8, 8, 40, sigmas=SIGMAS, precond="karras")


@pytest.mark.parametrize(("overrides", "field"), [
    ({"model": {"arch": "ncsn", "precond": "edm"}}, "model.precond"),
    ({"data": {"logit_transform": True}, "model": {"precond": "edm"}}, "model.precond"),
    ({"train": {"weighting": "edm", "anneal_power": 1.0}}, "train.anneal_power"),
    ({"train": {"weighting": "edm", "log_sigma_std": 0.0}}, "train.log_sigma_std"),
])
def test_config_refuses_edm_where_it_does_not_apply(tmp_path: Path, overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(write_params(tmp_path, overrides))


def test_paper_weighting_draws_the_levels_as_before() -> None:
    """``"paper"`` draws exactly torch.randint's uniform levels from the same generator (runs stay bit-identical)."""
    got = draw_levels("paper", SIGMAS, 64, torch.Generator().manual_seed(3))
    assert torch.equal(got, torch.randint(0, 40, (64,), generator=torch.Generator().manual_seed(3)))
    x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))

    def score(xt: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        return -xt

    paper = weighted_dsm_loss(score, x, SIGMAS, weighting="paper", anneal_power=2.0, levels=got, noise=noise)
    assert torch.equal(paper, dsm_loss(score, x, SIGMAS, levels=got, noise=noise))
    edm = weighted_dsm_loss(score, x, SIGMAS, weighting="edm", anneal_power=2.0, levels=got, noise=noise)
    torch.testing.assert_close(edm, paper * edm_loss_weight(SIGMAS[got]))


def test_edm_weighting_draws_levels_with_the_log_normal_frequencies() -> None:
    levels = draw_levels("edm", SIGMAS, 200_000, torch.Generator().manual_seed(6), log_sigma_mean=-0.6,
                         log_sigma_std=0.9)
    freq = torch.bincount(levels, minlength=40).float() / len(levels)
    assert (freq - edm_level_probs(SIGMAS, -0.6, 0.9)).abs().max() < 0.005
    with pytest.raises(ValueError, match="weighting"):
        draw_levels("uniform", SIGMAS, 4, torch.Generator())


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_composes_a_valid_config_under_the_default_profile(tmp_path: Path, dataset: str) -> None:
    """The cpu profile's EDM objective applies to image data; the 2-D mixture keeps the paper's."""
    cfg = load_config(write_params(tmp_path, {"base": {"dataset": dataset}, "data": {"folder": str(tmp_path)}},
                                   profile="cpu"))
    expected = ("ncsnv2", "paper") if dataset == "gmm" else ("edm", "edm")
    assert (cfg.model.precond, cfg.train.weighting) == expected
