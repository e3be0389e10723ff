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
from typing import Any

from ncsn.atomic import atomic_write
from ncsn.config import Config


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
    atomic_write(path, lambda f: f.write(text.encode()))


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


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Compute figures 1-3 and write them with their numbers into ``paths.figures``."""
    from ncsn.data import load_split
    from ncsn.devices import resolve_device
    from ncsn.figures import langevin_mixing, score_accuracy, ssm_noise
    from ncsn.figures.common import FIGURE_FILES, placeholder_figure, threads

    out_dir = Path(cfg.paths.figures)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.base.device)
    seed, fc = cfg.base.seed, cfg.figures
    numbers: dict[str, Any] = {"profile": cfg.profile, "seed": seed}
    timings: dict[str, float] = {}
    # Thousands of tiny steps: one intra-op thread is faster on a CPU (and kind to a shared machine).
    with threads(1 if device.type == "cpu" else None):
        start = time.perf_counter()
        fig1 = score_accuracy.compute(fc, seed=seed, device=device)
        score_accuracy.plot(fig1, out_dir / FIGURE_FILES["score_accuracy"])
        numbers["fig1_score_accuracy"] = fig1.numbers
        timings["fig1_score_accuracy"] = time.perf_counter() - start

        start = time.perf_counter()
        images = load_split(cfg.paths.prepare, "train").data
        if images.ndim == 4:
            fig2 = ssm_noise.compute(images, fc, seed=seed, dataset=cfg.base.dataset, device=device)
            ssm_noise.plot(fig2, out_dir / FIGURE_FILES["ssm_noise"])
            ssm_noise.write_csv(fig2, out_dir / FIGURE_FILES["ssm_noise_csv"])
            numbers["fig2_ssm_noise"] = fig2.numbers
        else:
            reason = f"figure 2 needs image data; dataset '{cfg.base.dataset}' holds vectors"
            placeholder_figure(out_dir / FIGURE_FILES["ssm_noise"], reason)
            (out_dir / FIGURE_FILES["ssm_noise_csv"]).write_text("step,clean,perturbed\n")
            numbers["fig2_ssm_noise"] = {"skipped": reason}
        timings["fig2_ssm_noise"] = time.perf_counter() - start

        start = time.perf_counter()
        fig3 = langevin_mixing.compute(fc, seed=seed, device=device)
        langevin_mixing.plot(fig3, out_dir / FIGURE_FILES["langevin_mixing"])
        numbers["fig3_langevin"] = fig3.numbers
        timings["fig3_langevin"] = time.perf_counter() - start
    numbers["timings_s"] = timings
    write_numbers(out_dir / FIGURE_FILES["numbers"], numbers)

    tracker.log_metrics(flat_metrics({k: v for k, v in numbers.items() if k != "seed"}))
    for key in ("score_accuracy", "ssm_noise", "ssm_noise_csv", "langevin_mixing", "numbers"):
        tracker.log_artifact(out_dir / FIGURE_FILES[key], "figures")
    f1, f3 = fig1.numbers, fig3.numbers["panels"]
    print(f"figures in {out_dir}: score error {f1['error_high_density']:.3f} near the modes vs "
          f"{f1['error_low_density']:.3f} far from them; weight of (-5,-5): plain "
          f"{f3['plain_exact']['weight']:.3f}, annealed {f3['annealed_exact']['weight']:.3f} (true 0.2)")
