"""The paper's figures 1-3 at tiny sizes: their numbers say what the paper says, and the stage writes them."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from ncsn.config import FiguresConfig, load_config
from ncsn.figures import langevin_mixing, score_accuracy, ssm_noise
from ncsn.figures.common import FIGURE_FILES, moving_average
from ncsn.figures.toy_training import small_mode_weight
from ncsn.core.toy import GaussianMixture
from tests.helpers import write_params


pytestmark = pytest.mark.usefixtures("single_thread")


class RecordingTracker:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[tuple[Path, str | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
        self.metrics.update(metrics)

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        assert Path(path).is_file(), path
        self.artifacts.append((Path(path), artifact_path))


def binary_images(n: int = 200, size: int = 8, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 1, size, size] with pixels 0 or 255: data on a finite set, like digit backgrounds."""
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 1, size, size, generator=gen) < 0.3) * 255).to(torch.uint8)


# --------------------------------------------------------------------------- figure 3


def test_annealed_langevin_is_closer_to_the_true_weight_than_plain():
    """Paper Fig. 3 with exact scores: plain ≈ 1/2 (the starts' half-planes), annealed ≈ 1/5."""
    result = langevin_mixing.compute(FiguresConfig.defaults(n_chains=1000, n_steps_each=100), seed=0, learned=False)
    panels = result.numbers["panels"]
    plain, annealed = panels["plain_exact"]["weight"], panels["annealed_exact"]["weight"]
    assert abs(annealed - 0.2) < abs(plain - 0.2)
    assert annealed == pytest.approx(0.2, abs=0.05)  # ± 4 standard errors
    assert plain == pytest.approx(0.5, abs=0.07)
    assert panels["exact_samples"]["weight"] == pytest.approx(0.2, abs=0.05)
    assert set(result.points) == {"exact_samples", "plain_exact", "annealed_exact"}


def test_learned_dsm_scores_also_need_annealing():
    cfg = FiguresConfig.defaults(toy_iters=300, toy_batch_size=128, n_chains=512, n_steps_each=20)
    result = langevin_mixing.compute(cfg, seed=0)
    panels = result.numbers["panels"]
    assert abs(panels["annealed_learned"]["weight"] - 0.2) < abs(panels["plain_learned"]["weight"] - 0.2)
    assert math.isfinite(result.numbers["dsm_final_loss"])


def test_small_mode_weight_counts_the_lower_left_half_plane():
    x = torch.tensor([[-5.0, -5.0], [5.0, 5.0], [4.0, 4.0], [-0.1, 0.0]])
    assert small_mode_weight(x) == 0.5


# --------------------------------------------------------------------------- figure 1


def test_learned_score_is_accurate_near_the_modes_only():
    """Paper Fig. 1: the SSM estimate is much worse in low-density regions than near the modes."""
    result = score_accuracy.compute(FiguresConfig.defaults(toy_iters=300, toy_batch_size=128), seed=0)
    n = result.numbers
    assert n["error_low_density"] > 5 * n["error_high_density"]
    assert n["relative_error_low_density"] > n["relative_error_high_density"]
    assert n["error_density_weighted"] < n["error_uniform_on_grid"]
    assert 0.05 < n["grid_fraction_high_density"] < 0.2 and n["grid_fraction_low_density"] > 0.5
    g = score_accuracy.GRID_SIZE
    assert result.exact.shape == result.estimated.shape == (g, g, 2)


def test_hdr_threshold_of_a_gaussian_matches_the_chi_square_quantile():
    """For N(0, I₂), {log p ≥ t} with mass 0.9 is the disc ‖x‖² ≤ χ²₂(0.9) = −2 log 0.1."""
    gauss = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1))
    t = score_accuracy.hdr_log_threshold(gauss, 0.9, torch.Generator().manual_seed(0), n=200_000)
    expected = -math.log(2 * math.pi) - 0.5 * (-2 * math.log(0.1))
    assert t == pytest.approx(expected, abs=0.02)


# --------------------------------------------------------------------------- figure 2


def test_ssm_on_clean_data_crosses_the_bound_that_perturbed_data_respects():
    """Paper Fig. 2: with noise σ the SSM loss stays above −D/(2σ²); on clean data it does not stop."""
    cfg = FiguresConfig.defaults(image_iters=120, image_batch_size=16, image_noise=0.1)
    curves = ssm_noise.compute(binary_images(), cfg, seed=0, dataset="binary")
    n = curves.numbers
    assert n["bound_perturbed"] == pytest.approx(-64 / (2 * 0.1 ** 2))
    assert n["clean"]["final"] < 5 * n["bound_perturbed"]
    assert n["clean"]["first_step_below_bound"] is not None
    assert n["perturbed"]["min"] > n["bound_perturbed"]
    assert n["perturbed"]["first_step_below_bound"] is None
    assert abs(n["clean"]["relative_slope_last_quarter"]) > abs(n["perturbed"]["relative_slope_last_quarter"])


def test_ssm_curves_are_deterministic_and_differ_only_by_the_noise():
    images = binary_images(50)
    a = ssm_noise.ssm_curve(images, noise=0.0, n_iters=3, batch_size=4, seed=1)
    b = ssm_noise.ssm_curve(images, noise=0.0, n_iters=3, batch_size=4, seed=1)
    c = ssm_noise.ssm_curve(images, noise=0.01, n_iters=3, batch_size=4, seed=1)
    assert a == b and a != c and len(a) == 3


def test_curve_stats_known_answers():
    line = [-10.0 * i for i in range(100)]
    stats = ssm_noise.curve_stats(line, bound=-500.0)
    assert stats["slope_last_quarter"] == pytest.approx(-10.0)
    assert stats["std_last_quarter"] == pytest.approx(0.0, abs=1e-9)
    assert stats["first_step_below_bound"] == 52  # -510 at index 51
    assert stats["final"] == pytest.approx(-945.0)
    flat = ssm_noise.curve_stats([5.0] * 40 + [float("nan")], bound=-1.0)
    assert flat["slope_last_quarter"] == 0.0 and flat["n_nonfinite"] == 1 and flat["first_step_below_bound"] is None


def test_moving_average():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


# --------------------------------------------------------------------------- the stage


def _smoke_cfg(tmp_path: Path, images: torch.Tensor, dataset: str = "mnist5k"):
    cfg = load_config(write_params(tmp_path, {"base": {"dataset": dataset}}))
    prepare = Path(cfg.paths.prepare)
    prepare.mkdir(parents=True)
    torch.save({"data": images}, prepare / "train.pt")
    return cfg


def test_figures_stage_writes_every_figure_and_its_numbers(tmp_path):
    from ncsn.stages import figures as stage

    cfg = _smoke_cfg(tmp_path, binary_images(64, 8))
    tracker = RecordingTracker()
    stage.run(cfg, tracker, argparse.Namespace())
    out = Path(cfg.paths.figures)
    for name in FIGURE_FILES.values():
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    numbers = json.loads((out / FIGURE_FILES["numbers"]).read_text())
    assert set(numbers) >= {"fig1_score_accuracy", "fig2_ssm_noise", "fig3_langevin", "timings_s"}
    assert set(numbers["fig3_langevin"]["panels"]) == set(langevin_mixing.PANELS)
    assert numbers["fig2_ssm_noise"]["clean"]["steps"] == cfg.figures.image_iters
    assert "fig1_score_accuracy_error_high_density" in tracker.metrics
    assert {p.name for p, _ in tracker.artifacts} == set(FIGURE_FILES.values())


def test_figures_stage_on_vector_data_skips_figure_2(tmp_path):
    from ncsn.stages import figures as stage

    cfg = _smoke_cfg(tmp_path, torch.randn(32, 2), dataset="gmm")
    stage.run(cfg, RecordingTracker(), argparse.Namespace())
    numbers = json.loads((Path(cfg.paths.figures) / FIGURE_FILES["numbers"]).read_text())
    assert "skipped" in numbers["fig2_ssm_noise"]
    assert (Path(cfg.paths.figures) / FIGURE_FILES["ssm_noise"]).is_file()


def test_figures_in_worker_processes_equal_figures_one_after_the_other(tmp_path, monkeypatch):
    from ncsn.stages import figures as stage

    numbers = {}
    for cpus in (2, 1):  # 2: figures 2 and 3 in spawned workers; 1: all three in this process
        monkeypatch.setattr("ncsn.stages.devices.usable_cpus", lambda: cpus)
        (tmp_path / str(cpus)).mkdir()
        cfg = _smoke_cfg(tmp_path / str(cpus), binary_images(64, 8))
        stage.run(cfg, RecordingTracker(), argparse.Namespace())
        numbers[cpus] = json.loads((Path(cfg.paths.figures) / FIGURE_FILES["numbers"]).read_text())
        del numbers[cpus]["timings_s"]
    assert numbers[2] == numbers[1]
