"""Draw the paper's Figures 1-3 at toy scale: score accuracy, SSM without noise, annealed Langevin.

Writes into ``paths.figures`` (see ``ncsn.figures``)::

    fig1_score_accuracy.png   learned vs exact scores on the 2-D mixture, and the error map
    fig2_ssm_noise.png        SSM loss on clean vs perturbed images (needs the prepare stage)
    fig2_ssm_loss.csv         the two loss curves
    fig3_langevin.png         plain vs annealed Langevin, exact and learned scores
    figures.json              every measured number, and the wall time of each figure

Independent of the trained image model; figure 2 reads ``paths.prepare/train.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from ncsn.storage.tables import write_text
from ncsn.config import Config, FiguresConfig


def _plain_json(value: Any) -> Any:
    """Nested numbers for JSON: NaN/inf become null."""
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_numbers(path: Path, numbers: dict[str, Any]) -> None:
    """figures.json, atomically."""
    text = json.dumps(_plain_json(numbers), indent=2) + "\n"
    write_text(path, text)


def flat_metrics(numbers: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves as ``{"fig1_error_high_density": 0.26, ...}`` (for MLflow)."""
    out: dict[str, float] = {}
    for key, value in numbers.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flat_metrics(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def figure1(fc: FiguresConfig, seed: int, device: str, out_dir: Path) -> dict[str, Any]:
    """Figure 1 (score accuracy on the 2-D mixture) into ``out_dir``; its numbers."""
    from ncsn.figures import score_accuracy
    from ncsn.figures.common import FIGURE_FILES

    fig1 = score_accuracy.compute(fc, seed=seed, device=device)
    score_accuracy.plot(fig1, out_dir / FIGURE_FILES["score_accuracy"])
    return fig1.numbers


def figure2(fc: FiguresConfig, seed: int, device: str, out_dir: Path, prepare_dir: str,
            dataset: str) -> dict[str, Any]:
    """Figure 2 (SSM on clean vs perturbed images, from ``prepare_dir/train.pt``) into ``out_dir``; its numbers."""
    from ncsn.data import load_split
    from ncsn.figures import ssm_noise
    from ncsn.figures.common import FIGURE_FILES, placeholder_figure

    images = load_split(prepare_dir, "train").data
    if images.ndim != 4:
        reason = f"figure 2 needs image data; dataset '{dataset}' holds vectors"
        placeholder_figure(out_dir / FIGURE_FILES["ssm_noise"], reason)
        write_text(out_dir / FIGURE_FILES["ssm_noise_csv"], "step,clean,perturbed\n")
        return {"skipped": reason}
    fig2 = ssm_noise.compute(images, fc, seed=seed, dataset=dataset, device=device)
    ssm_noise.plot(fig2, out_dir / FIGURE_FILES["ssm_noise"])
    ssm_noise.write_csv(fig2, out_dir / FIGURE_FILES["ssm_noise_csv"])
    return fig2.numbers


def figure3(fc: FiguresConfig, seed: int, device: str, out_dir: Path) -> dict[str, Any]:
    """Figure 3 (plain vs annealed Langevin on the mixture) into ``out_dir``; its numbers."""
    from ncsn.figures import langevin_mixing
    from ncsn.figures.common import FIGURE_FILES

    fig3 = langevin_mixing.compute(fc, seed=seed, device=device)
    langevin_mixing.plot(fig3, out_dir / FIGURE_FILES["langevin_mixing"])
    return fig3.numbers


def _timed(figure: Callable[..., dict[str, Any]], fc: FiguresConfig, seed: int, device: str, out_dir: Path,
           *extra: Any) -> tuple[dict[str, Any], float]:
    """``figure(fc, seed, device, out_dir, *extra)`` on one intra-op thread when on the CPU (thousands of
    tiny steps run fastest there, and kindly to the other figures); its numbers and wall seconds."""
    from ncsn.figures.common import threads

    start = time.perf_counter()
    with threads(1 if _on_cpu(device) else None):
        numbers = figure(fc, seed, device, out_dir, *extra)
    return numbers, time.perf_counter() - start


def _on_cpu(device: str) -> bool:
    return device.split(":")[0] == "cpu"


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Compute figures 1-3 and write them with their numbers into ``paths.figures``.

    The three figures are independent. On a CPU with two or more cores, figures 2 and 3 run in two
    worker processes while this one draws figure 1 (each on one thread): the numbers are the same as
    one after the other, since every figure seeds its own generators.
    """
    from ncsn.stages.devices import resolve_device, usable_cpus
    from ncsn.figures.common import FIGURE_FILES

    out_dir = Path(cfg.paths.figures)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = str(resolve_device(cfg.base.device))
    seed, fc = cfg.base.seed, cfg.figures
    numbers: dict[str, Any] = {"profile": cfg.profile, "seed": seed}
    jobs = {"fig1_score_accuracy": (figure1, fc, seed, device, out_dir),
            "fig2_ssm_noise": (figure2, fc, seed, device, out_dir, cfg.paths.prepare, cfg.base.dataset),
            "fig3_langevin": (figure3, fc, seed, device, out_dir)}
    results: dict[str, tuple[dict[str, Any], float]] = {}
    if _on_cpu(device) and usable_cpus() >= 2:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {key: pool.submit(_timed, *job) for key, job in jobs.items() if key != "fig1_score_accuracy"}
            results["fig1_score_accuracy"] = _timed(*jobs["fig1_score_accuracy"])
            results.update({key: future.result() for key, future in pending.items()})
    else:
        results = {key: _timed(*job) for key, job in jobs.items()}
    timings: dict[str, float] = {}
    for key in jobs:
        numbers[key], timings[key] = results[key]
    numbers["timings_s"] = timings
    write_numbers(out_dir / FIGURE_FILES["numbers"], numbers)

    tracker.log_metrics(flat_metrics({k: v for k, v in numbers.items() if k != "seed"}))
    for key in ("score_accuracy", "ssm_noise", "ssm_noise_csv", "langevin_mixing", "numbers"):
        tracker.log_artifact(out_dir / FIGURE_FILES[key], "figures")
    f1, f3 = numbers["fig1_score_accuracy"], numbers["fig3_langevin"]["panels"]
    print(f"figures in {out_dir}: score error {f1['error_high_density']:.3f} near the modes vs "
          f"{f1['error_low_density']:.3f} far from them; weight of (-5,-5): plain "
          f"{f3['plain_exact']['weight']:.3f}, annealed {f3['annealed_exact']['weight']:.3f} (true 0.2)")
