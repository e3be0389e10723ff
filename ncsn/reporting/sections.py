"""The sections of the report, one function each: the run's files in, a :class:`Section` out.

A missing or unreadable input never stops the report: its place says which stage makes it
("not available (run dvc repro <stage>)").
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ncsn.config import Config
from ncsn.figures.common import FIGURE_FILES
from ncsn.reporting import plots
from ncsn.reporting.captions import fig1_caption, fig2_caption, fig3_caption, sampler_text
from ncsn.reporting.environment import machine_info, mlflow_stage_times
from ncsn.reporting.html import Section, esc, figure, fmt, image_data, image_file, missing, table

log = logging.getLogger(__name__)

# Every file the report reads: key -> (stage that writes it, file name in that stage's folder).
FILES: dict[str, tuple[str, str]] = {
    "sigmas": ("train", "sigmas.csv"),
    "train_log": ("train", "train_log.csv"),
    "val_loss": ("train", "val_loss.csv"),
    "grid": ("sample", "grid.png"),
    "trajectory": ("sample", "trajectory.png"),
    "trajectory_gif": ("sample", "trajectory.gif"),
    "metrics": ("evaluate", "metrics.json"),
    "checkpoint_fid": ("evaluate", "checkpoint_fid.csv"),
    "nearest_neighbours": ("evaluate", "nearest_neighbours.png"),
    "fig1": ("figures", FIGURE_FILES["score_accuracy"]),
    "fig2": ("figures", FIGURE_FILES["ssm_noise"]),
    "fig3": ("figures", FIGURE_FILES["langevin_mixing"]),
    "figures_json": ("figures", FIGURE_FILES["numbers"]),
}
MAX_GIF_BYTES = 8 * 2 ** 20  # larger animations are left out (the PNG table shows the same)


@dataclass(frozen=True)
class Inputs:
    """The run's files, located through ``cfg.paths``."""

    cfg: Config

    def path(self, key: str) -> Path:
        stage, name = FILES[key]
        return Path(getattr(self.cfg.paths, stage)) / name

    def stage(self, key: str) -> str:
        return FILES[key][0]

    def image(self, key: str, alt: str) -> str:
        """The embedded image, or the "not available" line."""
        path = self.path(key)
        return image_file(path, alt) if path.is_file() else missing(self.stage(key), path.name)

    def csv(self, key: str) -> plots.Rows | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return plots.read_csv(path)
        except (OSError, UnicodeDecodeError) as err:
            log.warning("cannot read %s: %s", path, err)
            return None

    def json(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            log.warning("cannot read %s: %s", path, err)
            return None
        return value if isinstance(value, dict) else None

    def sampler(self) -> dict[str, Any] | None:
        """The resolved sampler the sample stage recorded in ``shards/manifest.json``."""
        from ncsn.storage.shards import read_manifest

        spec = (read_manifest(Path(self.cfg.paths.sample) / "shards") or {}).get("sampler")
        return spec if isinstance(spec, dict) else None

    def sigmas(self) -> list[float] | None:
        rows = self.csv("sigmas")
        return [v for v in plots.column(rows, "sigma") if math.isfinite(v)] if rows else None


def _plot(make: Callable[[], bytes], alt: str, stage: str) -> str:
    """An embedded plot; a failure to draw (e.g. a malformed CSV) becomes a line of text."""
    try:
        return image_data(make(), "image/png", alt)
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as err:
        log.warning("cannot plot %s: %s", alt, err)
        return f'<p class="missing">{esc(alt)}: the file is malformed ({esc(err)}); rerun dvc repro {esc(stage)}</p>'


# --------------------------------------------------------------------------- sections


def params_section(inputs: Inputs) -> Section:
    """The resolved configuration, one table per params.yaml section."""
    cfg = inputs.cfg
    tables = [f"<div><h3>profile</h3>{table([('profile', cfg.profile)])}</div>"]
    for name, values in cfg.to_dict().items():
        if isinstance(values, dict):
            tables.append(f"<div><h3>{esc(name)}</h3>{table(values.items(), ('key', 'value'))}</div>")
    body = ('<p>After the profile filled every <code>null</code> of params.yaml '
            f'(profile <b>{esc(cfg.profile)}</b>; explicit values win).</p>'
            '<div class="params">' + "".join(tables) + "</div>")
    return Section("params", "Parameters (resolved)", body)


def sigmas_section(inputs: Inputs) -> Section:
    sigmas = inputs.sigmas()
    if not sigmas:
        return Section("sigmas", "Noise levels", missing("train", "sigmas.csv"))
    shown = ", ".join(f"{s:.4g}" for s in sigmas[:12]) + (f", … ({len(sigmas)} in all)" if len(sigmas) > 12 else "")
    body = figure(_plot(lambda: plots.sigma_plot(sigmas), "noise levels", "train"),
                  f"Geometric schedule used in training and sampling: σ = {esc(shown)}.")
    return Section("sigmas", "Noise levels", body)


def training_section(inputs: Inputs) -> Section:
    train_rows, val_rows = inputs.csv("train_log"), inputs.csv("val_loss")
    if not train_rows and not val_rows:
        return Section("training", "Training and validation loss", missing("train", "train_log.csv, val_loss.csv"))
    parts = [figure(_plot(lambda: plots.training_plot(train_rows or [], val_rows or []), "loss curves", "train"),
                    "Annealed DSM loss per training batch and on held-out data (fixed noise draws, comparable "
                    "across steps and runs).")]
    if not train_rows:
        parts.append(missing("train", "train_log.csv"))
    if val_rows:
        parts.append(figure(_plot(lambda: plots.level_loss_plot(val_rows, inputs.sigmas()), "per-level loss", "train"),
                            "Held-out loss per noise level, weighted by σ² as in training: the paper's "
                            "principled model comparison, level by level."))
    else:
        parts.append(missing("train", "val_loss.csv"))
    summary = []
    if train_rows:
        last = train_rows[-1]
        summary += [("steps", last.get("step")), ("last training loss", last.get("loss"))]
        ips = sorted(v for v in plots.column(train_rows, "images_per_s") if math.isfinite(v))
        if ips:
            summary.append(("median images / s", f"{ips[len(ips) // 2]:.4g}"))
    if val_rows:
        summary.append((f"held-out loss at step {val_rows[-1].get('step')}", val_rows[-1].get("mean")))
    parts.append(table(summary))
    return Section("training", "Training and validation loss", "".join(parts))


def samples_section(inputs: Inputs) -> Section:
    body = figure(inputs.image("grid", "sample grid"),
                  f"The first samples drawn from <code>model.pt</code> by "
                  f"{esc(sampler_text(inputs.sampler()))}.")
    return Section("samples", "Samples", body)


def metrics_section(inputs: Inputs) -> Section:
    metrics = inputs.json("metrics")
    if metrics is None:
        return Section("metrics", "Sample quality", missing("evaluate", "metrics.json"))
    parts = [f"<p>Feature extractor: <b>{esc(metrics.get('extractor', 'not recorded'))}</b></p>"]
    if metrics.get("note"):
        parts.append(f'<p class="note">{esc(metrics["note"])}</p>')
    paired, used = [], {"extractor", "note"}
    for key, value in metrics.items():
        floor_key = f"floor_{key}_train_vs_test"
        if key.startswith(("floor_", "reference_")) or floor_key not in metrics:
            continue
        reference = next((k for k in metrics if k.startswith(f"reference_{key}")), None)
        paired.append((key, value, metrics[floor_key], metrics.get(reference) if reference else None))
        used |= {key, floor_key} | ({reference} if reference else set())
    for key in metrics:  # a reference value without a floor (e.g. the IS of the test split)
        if key.startswith("reference_") and key not in used:
            base = key[len("reference_"):].rsplit("_test", 1)[0]
            if base in metrics and base not in used:
                paired.append((base, metrics[base], None, metrics[key]))
                used |= {base, key}
    if paired:
        n_s, n_f = metrics.get("n_samples"), metrics.get("n_floor_train")
        parts.append(table(paired, ("metric", f"samples vs test ({fmt(n_s)} samples)",
                                    f"real-vs-real floor: train vs test ({fmt(n_f)} images)",
                                    "real data (test split)")))
        parts.append("<p>The floor is what real images score against the test split with as many images as there "
                     "are samples: no model should beat it; FID/KID depend on the sample count.</p>")
    rest = [(k, v) for k, v in metrics.items()
            if k not in used and not k.startswith("nn_") and not isinstance(v, (dict, list))]
    if rest:
        parts.append("<h3>Other values</h3>" + table(rest, ("key", "value")))
    if any(k.startswith("nn_") for k in metrics):
        parts.append('<p>The memorisation check (nearest training images) is under '
                     '<a href="#figures">Figure 6</a>.</p>')
    return Section("metrics", "Sample quality", "".join(parts))


def checkpoints_section(inputs: Inputs) -> Section:
    rows = inputs.csv("checkpoint_fid")
    if not rows:
        return Section("checkpoints", "Checkpoint selection", missing("evaluate", "checkpoint_fid.csv"))
    metrics = inputs.json("metrics") or {}
    best = metrics.get("best_checkpoint_step")
    if best is None:
        fids = plots.column(rows, "fid")
        finite = [(f, s) for f, s in zip(fids, plots.column(rows, "step")) if math.isfinite(f)]
        best = min(finite)[1] if finite else None
    body = figure(_plot(lambda: plots.checkpoint_plot(rows, best), "checkpoint selection", "evaluate"),
                  "Fast FID of every training snapshot (same seeds, fewer samples and Langevin steps than the "
                  "final evaluation) and its held-out DSM loss; the paper picks checkpoints by FID.")
    cols = [c for c in ("step", "fid", "dsm_loss") if c in rows[0]]
    body += table([[r.get(c) for c in cols] for r in rows], cols)
    return Section("checkpoints", "Checkpoint selection", body)


def figures_section(inputs: Inputs) -> Section:
    """The paper's figures 1-6: 1-3 from the figures stage, 4-6 from sample, inpaint and evaluate."""
    numbers = inputs.json("figures_json") or {}
    parts = []
    for key, title, num_key, caption in (
        ("fig1", "Figure 1: score estimation is accurate only near the modes", "fig1_score_accuracy", fig1_caption),
        ("fig2", "Figure 2: sliced score matching without noise fails", "fig2_ssm_noise", fig2_caption),
        ("fig3", "Figure 3: annealed vs plain Langevin dynamics", "fig3_langevin", fig3_caption),
    ):
        text = caption(numbers[num_key]) if num_key in numbers else ""
        parts.append(f"<h3>{esc(title)}</h3>" + figure(inputs.image(key, title), text))

    parts.append("<h3>Figure 4: sampling trajectory</h3>")
    gif = inputs.path("trajectory_gif")
    animation = image_file(gif, "trajectory animation") if gif.is_file() and gif.stat().st_size <= MAX_GIF_BYTES else ""
    parts.append(figure(inputs.image("trajectory", "trajectory") + " " + animation,
                        "Rows: samples; columns: the uniform start, then the state after the Langevin steps "
                        "of each noise level (and the denoising step when on), largest σ first; sampler: "
                        + esc(sampler_text(inputs.sampler()))
                        + ("; beside it, the same as an animation." if animation else ".")))

    parts.append("<h3>Figure 5: inpainting</h3>")
    inpaint_dir = Path(inputs.cfg.paths.inpaint)
    if (inpaint_dir / "SKIPPED.txt").is_file():
        parts.append(f"<p>{esc((inpaint_dir / 'SKIPPED.txt').read_text().strip())}</p>")
    for mask in inputs.cfg.inpaint.masks:
        path = inpaint_dir / f"{mask}.png"
        body = image_file(path, f"inpainting, {mask} mask") if path.is_file() else missing("inpaint", path.name)
        parts.append(figure(body, f"Mask <b>{esc(mask)}</b>. Rows: occluded, completed, original."))

    parts.append("<h3>Figure 6: nearest training images</h3>")
    metrics = inputs.json("metrics") or {}
    nn_rows = [(k, v) for k, v in metrics.items() if k.startswith("nn_") and not isinstance(v, (dict, list))]
    caption = esc(metrics.get("nn_image_columns", "Each row: a sample, then its nearest training images."))
    parts.append(figure(inputs.image("nearest_neighbours", "nearest neighbours"), caption)
                 + (table(nn_rows, ("memorisation check", "value")) if nn_rows else ""))
    return Section("figures", "Paper figures 1–6", "".join(parts))


def timings_section(inputs: Inputs) -> Section:
    parts = []
    stage_times = mlflow_stage_times() if inputs.cfg.tracking.enabled else []
    if stage_times:
        parts.append(table([(t["stage"], f"{t['seconds']:.1f}", t["start"], t["run_id"]) for t in stage_times],
                           ("stage", "wall time (s)", "started", "MLflow run")))
    else:
        parts.append("<p>Stage wall times: not recorded (DVC's dvc.lock stores no times; they come from the "
                     "stages' MLflow runs when tracking is on).</p>")
    figure_times = (inputs.json("figures_json") or {}).get("timings_s")
    if isinstance(figure_times, dict) and figure_times:
        parts.append("<h3>figures stage</h3>" + table([(k, f"{v:.1f}") for k, v in figure_times.items()],
                                                      ("figure", "wall time (s)")))
    return Section("timings", "Timings", "".join(parts))


def machine_section(inputs: Inputs) -> Section:
    body = ("<p>The machine that rendered this report (stages may have run elsewhere).</p>"
            + table(machine_info()))
    return Section("machine", "Machine", body)
