"""The probability-flow ODE solvers as the stages run them (``sample.sampler`` = euler, heun, dpmpp_2m): on a
tiny U-Net at any σ, on the paper's RefineNet at its trained levels only, counted, recorded, inpainting,
and ``ncsn sample`` with ``sample.sampler=heun`` on the smoke profile's trained model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from ncsn.config import SampleConfig, config_from_dict
from ncsn.core.sampling import dpmpp_2m, euler, heun, karras_sigmas
from ncsn.core.sigmas import geometric_sigmas
from ncsn.models import build_model
from ncsn.stages.sampler import (SamplerSpec, complete, resolve_sampler, sample_batch, start_state, trajectory)
from ncsn.storage.checkpoint import FORMAT
from ncsn.storage.score_model import load_score_model, network_args

SEEDS = [3, 1, 4, 1, 5]


def _checkpoint(arch: str, image_size: int, num_levels: int, **model) -> dict:
    cfg = config_from_dict({"profile": "smoke", "data": {"image_size": image_size},
                            "model": {"arch": arch, "num_levels": num_levels, **model}})
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.01, num_levels)
    net = build_model(**network_args(cfg.model), channels=1, image_size=image_size, sigmas=sigmas)
    with torch.no_grad():  # the output layer starts at zero: give every weight a value
        for param in net.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return {"format": FORMAT, "step": 0, "config": cfg.to_dict(), "sigmas": sigmas,
            "data": {"dataset": "mnist5k", "channels": 1, "image_size": image_size}, "model": net.state_dict(),
            "ema": None}


@pytest.fixture(scope="module")
def unet() -> dict:
    return _checkpoint("unet", 8, 4)


@pytest.fixture(scope="module")
def refinenet() -> dict:
    return _checkpoint("ncsn", 28, 3, ngf=4)


def _counted(model) -> list[str]:
    """Count the network's calls through both of its paths (level index, any σ)."""
    calls: list[str] = []
    net = model.net
    model.score_fn = lambda x, levels: calls.append("level") or net(x, levels)
    if hasattr(net, "forward_sigma"):
        model.sigma_fn = lambda x, sigma: calls.append("sigma") or net.forward_sigma(x, sigma)
    return calls


@pytest.mark.parametrize(("name", "fn"), [("euler", euler), ("heun", heun), ("dpmpp_2m", dpmpp_2m)])
def test_an_ode_sampler_runs_the_core_solver_on_the_karras_schedule(unet, name: str, fn) -> None:
    model = load_score_model(unet)
    calls = _counted(model)
    spec = resolve_sampler(SampleConfig.defaults(sampler=name, steps=5), model.sigmas)
    assert (spec.sigma_max, spec.sigma_min) == pytest.approx((1.0, 0.01))  # the trained range by default
    got = sample_batch(model, SEEDS, spec)
    assert len(calls) == spec.evaluations_per_sample == {"heun": 2 * 5 - 1}.get(name, 5)
    assert calls[0] == "level" and "sigma" in calls  # σ_max is a trained level; the others are not
    x0, gens = start_state(spec, model, SEEDS)
    torch.testing.assert_close(got, fn(model.denoiser(), x0, karras_sigmas(5, 0.01, 1.0)), rtol=0, atol=1e-6)
    steps = [i for i, _ in trajectory(model, SEEDS, spec)]
    assert steps == [-1, 0, 1, 2, 3, 4]
    assert spec.step_label(4, model.sigmas) == "step 5: sigma 0"


def test_heun_with_churn_is_reproducible_per_seed_and_recorded(unet) -> None:
    model = load_score_model(unet)
    cfg = SampleConfig.defaults(sampler="heun", steps=4, churn=2.0, s_tmin=0.05, s_noise=1.003)
    spec = resolve_sampler(cfg, model.sigmas)
    whole = sample_batch(model, SEEDS, spec)
    torch.testing.assert_close(sample_batch(model, SEEDS[2:], spec), whole[2:], rtol=0, atol=1e-5)
    assert not torch.equal(whole, sample_batch(model, SEEDS, resolve_sampler(dataclasses.replace(cfg, churn=0.0),
                                                                              model.sigmas)))
    recorded = json.loads(json.dumps(spec.to_dict()))
    assert recorded["evaluations_per_sample"] == 7 and recorded["s_tmax"] is None
    assert SamplerSpec.from_dict(recorded) == spec
    assert spec.describe() == ("Heun (EDM Algorithm 2), 4 steps on the Karras schedule (rho = 7) from sigma 1 to 0.01"
                               " then 0, churn = 2 for sigma in [0.05, inf], s_noise = 1.003, 7 network evaluations"
                               " per sample")


def test_the_refinenet_takes_heun_on_its_levels_and_names_them_for_another_sigma(refinenet) -> None:
    model = load_score_model(refinenet)
    calls = _counted(model)
    on_levels = resolve_sampler(SampleConfig.defaults(sampler="heun", schedule="levels"), model.sigmas)
    x = sample_batch(model, SEEDS[:2], on_levels)
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    assert calls == ["level"] * (2 * 3 - 1) == ["level"] * on_levels.evaluations_per_sample
    assert "3 steps on the trained levels (1 ... 0.01) then 0" in on_levels.describe()
    karras = resolve_sampler(SampleConfig.defaults(sampler="heun", steps=4), model.sigmas)
    with pytest.raises(ValueError, match=r"^sigma = 0\.\d+ is not a noise level of this network \(model\.arch 'ncsn'"
                                         r" takes only its trained levels: 1, 0\.1, 0\.01\); sample it on those"
                                         r" levels \(sample\.schedule: levels\)$"):
        sample_batch(model, SEEDS[:2], karras)


@pytest.mark.parametrize("name", ["heun", "dpmpp_2m"])
def test_inpainting_with_an_ode_sampler_keeps_the_observed_pixels(unet, name: str) -> None:
    model = load_score_model(unet)
    spec = resolve_sampler(SampleConfig.defaults(sampler=name, steps=4), model.sigmas)
    y = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    observed = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    observed[..., :4] = True
    from ncsn.core.rng import make_generators

    completed = complete(model, spec, y, observed, make_generators([0, 1, 2]))
    assert torch.equal(completed[observed.expand_as(y)], y[observed.expand_as(y)])
    assert not torch.equal(completed, y)
    # no observed pixel: the sampler's own samples from the same start
    nothing = complete(model, spec, y, torch.zeros_like(observed), make_generators([0, 1, 2]))
    torch.testing.assert_close(nothing, sample_batch(model, [0, 1, 2], spec), rtol=0, atol=1e-6)


def test_ncsn_sample_with_heun_on_the_smoke_model(trained: Path, tmp_path: Path) -> None:
    from ncsn.cli import main
    from tests.helpers import write_params

    params = write_params(tmp_path, {"sample": {"sampler": "heun", "steps": 5, "corrector_sigmas": None}})
    out = tmp_path / "heun"
    assert main(["--params", str(params), "sample", "--model", str(trained / "outputs" / "train" / "model.pt"),
                 "--out", str(out), "--n", "8"]) == 0
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["sampler"]["sampler"] == "heun" and manifest["sampler"]["evaluations_per_sample"] == 9
    assert (out / "grid.png").is_file() and (out / "trajectory.png").is_file()
