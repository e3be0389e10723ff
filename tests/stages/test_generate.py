"""``ncsn.storage.score_model`` and ``ncsn.stages.sampler``: the sampler, ε and network options of ``sample`` as the
stages use them.

A tiny real network (the smoke U-Net on 8x8 images, random non-zero weights) in our checkpoint
format; each option is checked against a direct call of the function it names.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ncsn.storage.checkpoint import FORMAT
from ncsn.config import SampleConfig, config_from_dict
from ncsn.stages.sampler import resolve_sampler, sample_batch, trajectory
from ncsn.storage.score_model import initial_state, load_score_model
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.core.sampling import annealed_langevin, predictor_corrector, technique4_eps
from ncsn.core.sigmas import geometric_sigmas

SEEDS = [3, 1, 4, 1, 5]


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    cfg = config_from_dict({"profile": "smoke", "data": {"image_size": 8}})
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    net = build_model(**network_args(cfg.model), channels=1, image_size=8, sigmas=sigmas)
    with torch.no_grad():  # the output layer starts at zero: give every weight a value
        for param in net.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return {"format": FORMAT, "step": 0, "config": cfg.to_dict(), "sigmas": sigmas,
            "data": {"dataset": "mnist5k", "channels": 1, "image_size": 8}, "model": net.state_dict(), "ema": None}


def test_eps_auto_is_technique_4_for_the_steps_actually_taken(checkpoint) -> None:
    sigmas = load_score_model(checkpoint).sigmas.tolist()
    cfg = SampleConfig.defaults(eps="auto", n_steps_each=5)
    five = resolve_sampler(cfg, sigmas).eps
    assert five == technique4_eps(sigmas, 5)
    assert resolve_sampler(cfg, sigmas, n_steps_each=2).eps == technique4_eps(sigmas, 2) > five
    reference = dataclasses.replace(cfg, convention="reference")
    assert resolve_sampler(reference, sigmas).eps == technique4_eps(sigmas, 5) / 2
    assert resolve_sampler(SampleConfig.defaults(eps=3e-5), sigmas).eps == 3e-5


@pytest.mark.parametrize(("sampler", "denoise"), [("ald", True), ("ald", False), ("pc", True), ("pc", False)])
def test_sample_batch_runs_the_chosen_sampler(checkpoint, sampler: str, denoise: bool) -> None:
    model = load_score_model(checkpoint)
    cfg = SampleConfig.defaults(sampler=sampler, n_steps_each=2, eps="auto", denoise=denoise)
    calls = []
    net = model.net
    model.score_fn = lambda x, levels: calls.append(1) or net(x, levels)
    spec = resolve_sampler(cfg, model.sigmas)
    got = sample_batch(model, SEEDS, spec)
    assert len(calls) == spec.evaluations_per_sample
    assert len(calls) == {"ald": 4 * 2, "pc": 4 * 3}[sampler] + (1 if denoise else 0) - (1 if sampler == "pc" else 0)
    x0, gens = initial_state(model, SEEDS)
    run = predictor_corrector if sampler == "pc" else annealed_langevin
    expected = run(net, x0, model.sigmas, n_steps_each=2, eps=technique4_eps(model.sigmas.tolist(), 2),
                   generator=gens, denoise=denoise)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    levels = [level for level, _ in trajectory(model, SEEDS, spec)]
    assert levels == [-1, 0, 1, 2, 3] + ([4] if denoise else [])


def test_sample_is_independent_of_the_batch_it_is_drawn_in(checkpoint) -> None:
    model = load_score_model(checkpoint)
    spec = resolve_sampler(SampleConfig.defaults(sampler="pc", n_steps_each=2, eps="auto"), model.sigmas)
    whole = sample_batch(model, SEEDS, spec)
    # equal up to the float rounding of convolutions at another batch size; another seed differs by O(1)
    torch.testing.assert_close(sample_batch(model, SEEDS[2:], spec), whole[2:], rtol=0, atol=1e-5)
    assert (sample_batch(model, [6, 1, 5], spec) - whole[2:]).abs().max() > 0.1


def test_bf16_sampling_is_close_to_float32_but_not_equal(checkpoint) -> None:
    exact = load_score_model(checkpoint)
    approx = load_score_model(checkpoint, bf16=True)
    x0, _ = initial_state(exact, SEEDS)
    levels = torch.tensor([0, 1, 2, 3, 0])
    with torch.inference_mode():
        want, got = exact.score()(x0, levels), approx.score()(x0, levels)
    assert got.dtype == torch.float32
    error = ((got - want).norm() / want.norm()).item()
    assert 0 < error < 5e-2
    spec = resolve_sampler(SampleConfig.defaults(sampler="pc", n_steps_each=1, eps="auto"), exact.sigmas)
    a, b = sample_batch(exact, SEEDS, spec), sample_batch(approx, SEEDS, spec)
    assert a.dtype == b.dtype == torch.float32
    assert ((a - b).norm() / a.norm()).item() < 5e-2


def test_compiled_network_samples_what_the_eager_one_does(checkpoint) -> None:
    pytest.importorskip("torch._inductor")
    eager = load_score_model(checkpoint)
    compiled = load_score_model(checkpoint, compile=True)
    spec = resolve_sampler(SampleConfig.defaults(sampler="pc", n_steps_each=1, eps="auto"), eager.sigmas)
    torch.testing.assert_close(sample_batch(compiled, SEEDS, spec), sample_batch(eager, SEEDS, spec),
                               rtol=1e-4, atol=1e-4)


def test_bf16_on_a_cpu_without_native_bf16_warns(checkpoint, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level("WARNING", logger="ncsn.storage.score_model"):
        load_score_model(checkpoint, bf16=True)
    assert "sample.bf16 is on, but this CPU has no native bf16" in caplog.text
    caplog.clear()
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    with caplog.at_level("WARNING", logger="ncsn.storage.score_model"):
        load_score_model(checkpoint, bf16=True)
    assert "bf16" not in caplog.text


def test_the_resolved_sampler_survives_its_manifest_round_trip(checkpoint) -> None:
    import json

    from ncsn.stages.sampler import SamplerSpec

    sigmas = load_score_model(checkpoint).sigmas
    spec = resolve_sampler(SampleConfig.defaults(sampler="ald", n_steps_each=3, eps="auto", denoise=True), sigmas,
                           n_steps_each=2)
    assert (spec.n_steps_each, spec.num_levels, spec.evaluations_per_sample) == (2, 4, 4 * 2 + 1)
    recorded = json.loads(json.dumps(spec.to_dict()))
    assert SamplerSpec(**{k: recorded[k] for k in SamplerSpec.__dataclass_fields__}) == spec
    assert recorded["evaluations_per_sample"] == 9 and recorded["eps"] == technique4_eps(sigmas.tolist(), 2)


def test_a_corrector_band_counts_and_runs_what_predictor_corrector_does(checkpoint) -> None:
    """The smoke model's σ 1 → 0.01 over 4 levels (1, 0.215, 0.046, 0.01): the band [0.04, 0.5]
    holds the middle two, which get T = 2 correctors each: 4 + 2·2 evaluations."""
    import json

    from ncsn.stages.sampler import SamplerSpec

    model = load_score_model(checkpoint)
    cfg = SampleConfig.defaults(sampler="pc", n_steps_each=2, eps="auto", corrector_sigmas=(0.04, 0.5))
    calls = []
    net = model.net
    model.score_fn = lambda x, levels: calls.append(int(levels[0])) or net(x, levels)
    spec = resolve_sampler(cfg, model.sigmas)
    assert (spec.corrected_levels, spec.evaluations_per_sample) == (2, 4 + 2 * 2)
    assert "at the 2 levels with sigma in [0.04, 0.5]" in spec.describe()
    got = sample_batch(model, SEEDS, spec)
    assert calls == [0, 1, 1, 1, 2, 2, 2, 3]
    x0, gens = initial_state(model, SEEDS)
    expected = predictor_corrector(net, x0, model.sigmas, n_steps_each=2, eps=technique4_eps(model.sigmas.tolist(), 2),
                                   generator=gens, corrector_sigmas=(0.04, 0.5))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    recorded = json.loads(json.dumps(spec.to_dict()))
    assert recorded["corrector_sigmas"] == [0.04, 0.5]
    assert SamplerSpec(**{k: recorded[k] for k in SamplerSpec.__dataclass_fields__}) == spec
    assert resolve_sampler(cfg, model.sigmas, every_level=True).evaluations_per_sample == 4 * 3
    with pytest.raises(ValueError, match=r"sample.corrector_sigmas = \[2.0, 3.0\] holds none of the model's noise"):
        resolve_sampler(dataclasses.replace(cfg, corrector_sigmas=(2.0, 3.0)), model.sigmas)
