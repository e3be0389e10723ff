"""The Python API (``ncsn.load`` and ``ncsn.Model``) on the smoke profile's trained U-Net, and the
README's example, run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

import ncsn
from ncsn.config import config_from_dict
from ncsn.core.sigmas import geometric_sigmas
from ncsn.models import build_model
from ncsn.stages.sampler import sample_batch
from ncsn.storage.checkpoint import FORMAT, CheckpointError, atomic_save
from ncsn.storage.score_model import load_score_model, network_args
from tests.helpers import REPO


@pytest.fixture(scope="module")
def model(trained: Path) -> ncsn.Model:
    return ncsn.load(trained / "outputs" / "train" / "model.pt")


def test_readme_example_runs_as_written(trained: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S)
    assert block, "README.md has no ```python block under '## Python API'"
    monkeypatch.chdir(trained)
    exec(compile(block.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert "network evaluations per sample" in printed[0]
    assert printed[1] == "(16, 1, 28, 28) True unet"


def test_samples_are_images_drawn_by_the_runs_sampler(model: ncsn.Model, trained: Path) -> None:
    x = model.sample(6, seed=3)
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    direct = load_score_model(trained / "outputs" / "train" / "model.pt")
    raw = sample_batch(direct, list(range(3, 9)), model.sampler)
    assert torch.equal(x, raw.clamp(0, 1))
    assert model.sampler.sampler == model.config.sample.sampler


def test_same_seed_same_bytes_whatever_the_count(model: ncsn.Model) -> None:
    whole = model.sample(8, seed=0)
    assert torch.equal(model.sample(8, seed=0), whole)
    assert torch.equal(model.sample(4, seed=4), whole[4:])  # the same batch shape: the same bytes
    assert torch.equal(model.sample(8, seed=0, batch_size=4), whole)
    # another batch size rounds the network's kernels differently, by about one float32 ulp
    torch.testing.assert_close(model.sample(8, seed=0, batch_size=3), whole, rtol=0, atol=1e-5)
    assert (model.sample(4, seed=100) - whole[:4]).abs().max() > 0.1


def test_inpaint_returns_the_observed_pixels_exactly(model: ncsn.Model) -> None:
    images = model.sample(3, seed=0)
    masks = torch.zeros(3, 1, 28, 28, dtype=torch.bool)
    masks[..., 10:20, :] = True
    completed = model.inpaint(images, masks, seed=0)
    assert completed.shape == images.shape
    assert torch.equal(completed[masks.expand_as(images)], images[masks.expand_as(images)])
    assert not torch.equal(completed, images)
    assert torch.equal(model.inpaint(images, masks, seed=0), completed)
    pixels = (images * 255).round().to(torch.uint8)
    from_pixels = model.inpaint(pixels, masks.float(), seed=0)
    assert torch.equal(from_pixels[masks.expand_as(images)], pixels[masks.expand_as(images)].float() / 255)


def test_denoise_is_tweedie_of_the_score(model: ncsn.Model) -> None:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for sigma in (model.sigmas[0], float(model.sigmas[3]), 0.05):
        s, d = model.score(x, sigma), model.denoise(x, sigma)
        torch.testing.assert_close(d, x + float(sigma) ** 2 * s)
    level = model.sigmas[2].item()
    levels = torch.full((4,), 2)
    with torch.inference_mode():
        expected = model._model.net(x, levels)
    assert torch.equal(model.score(x, level), expected)
    between = model.score(x, (model.sigmas[2] * model.sigmas[3]).sqrt().item())
    assert between.shape == x.shape and torch.isfinite(between).all()


def test_bits_per_dim_follow_the_seed_and_rise_with_noise(model: ncsn.Model, trained: Path) -> None:
    from ncsn.data import load_split

    digits = load_split(trained / "outputs" / "prepare", "test").data[:4]
    noise = torch.randint(0, 256, digits.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bpd = model.bits_per_dim(digits, seed=0)
    assert bpd.shape == (4,) and bool(torch.isfinite(bpd).all())
    assert torch.equal(bpd, model.bits_per_dim(digits, seed=0))
    assert bool((model.bits_per_dim(noise, seed=0) > bpd).all())  # uniform noise is far less likely
    with pytest.raises(ValueError, match="uint8"):
        model.bits_per_dim(digits.float())


def test_the_refinenet_names_its_levels_for_another_sigma(tmp_path: Path) -> None:
    cfg = config_from_dict({"profile": "smoke", "model": {"arch": "ncsn", "ngf": 4, "num_levels": 3}})
    sigmas = geometric_sigmas(1.0, 0.01, 3)
    net = build_model(**network_args(cfg.model), channels=1, image_size=28, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 0, "config": cfg.to_dict(), "sigmas": sigmas,
                 "data": {"dataset": "mnist5k", "channels": 1, "image_size": 28}, "model": net.state_dict(),
                 "ema": None}, tmp_path / "model.pt")
    model = ncsn.load(tmp_path)
    x = torch.rand(2, 1, 28, 28)
    assert model.score(x, 0.1).shape == x.shape  # a trained level
    with pytest.raises(ValueError, match=r"sigma = 0\.3 is not.*'ncsn' takes only its trained levels: 1, 0\.1, 0\.01"):
        model.score(x, 0.3)


def test_load_names_the_file_a_folder_lacks(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint; pass a checkpoint file such as .*model\.pt"):
        ncsn.load(tmp_path)
    with pytest.raises(ValueError, match="whole number >= 1"):
        ncsn.Model.sample(None, 0)  # type: ignore[arg-type]


def test_importing_ncsn_loads_nothing_until_the_api_is_used() -> None:
    import subprocess
    import sys

    code = "import sys, ncsn; print(sorted(m for m in sys.modules if m.startswith('ncsn')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "['ncsn']"
