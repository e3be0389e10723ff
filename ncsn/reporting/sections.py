"""The data of the report's sections, one function each: the run's files in, a dict out.

Each dict holds ``id`` and ``title`` and what ``templates/report.html`` lays out for that
section (plain values; the markup is the template's). A missing or unreadable input never
stops the report: its place says which stage makes it ("not available (run dvc repro <stage>)").
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
from ncsn.figures.sigma_schedule import sigma_schedule_png
from ncsn.reporting import plots
from ncsn.reporting.captions import fig3_panels, sampler_text
from ncsn.reporting.environment import machine_info, mlflow_stage_times

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
Data = dict[str, Any]


@dataclass(frozen=True)
class Inputs:
    """The run's files, located through ``cfg.paths``."""

    cfg: Config

    def path(self, key: str) -> Path:
        """Where the file ``key`` of :data:`FILES` lies."""
        stage, name = FILES[key]
        return Path(getattr(self.cfg.paths, stage)) / name

    def image(self, key: str, alt: str) -> Data:
        """An image file for the template: ``path`` (None when missing), ``alt``, and the ``stage``
        and file ``name`` that the "not available" line names."""
        path = self.path(key)
        return image_ref(path, alt, FILES[key][0])

    def csv(self, key: str) -> plots.Rows | None:
        """The rows of a CSV input, or None when it is missing or unreadable."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return plots.read_csv(path)
        except (OSError, UnicodeDecodeError) as err:
            log.warning("cannot read %s: %s", path, err)
            return None

    def json(self, key: str) -> dict[str, Any] | None:
        """A JSON object input, or None when it is missing, unreadable or not an object."""
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
        """The ``sampler`` entry of the sample stage's ``shards/manifest.json``, as stored."""
        from ncsn.storage.shards import read_manifest

        spec = (read_manifest(Path(self.cfg.paths.sample) / "shards") or {}).get("sampler")
        return spec if isinstance(spec, dict) else None

    def sigmas(self) -> list[float] | None:
        """The finite σ of the train stage's ``sigmas.csv``, or None when it is missing."""
        rows = self.csv("sigmas")
        return [v for v in plots.column(rows, "sigma") if math.isfinite(v)] if rows else None


def image_ref(path: Path, alt: str, stage: str) -> Data:
    """The template's view of an image file that ``stage`` writes."""
    return {"path": path if path.is_file() else None, "alt": alt, "stage": stage, "name": path.name}


def missing_ref(stage: str, what: str) -> Data:
    """The "not available (run dvc repro <stage>)" line of an input that does not exist."""
    return {"stage": stage, "what": what}


def _plot(make: Callable[[], bytes], alt: str, stage: str) -> Data:
    """A plot for the template: ``png``, or ``error`` when drawing failed (e.g. a malformed CSV)."""
    try:
        return {"png": make(), "alt": alt, "stage": stage, "error": None}
    except (ValueError, KeyError, IndexError, ZeroDivisionError) as err:
        log.warning("cannot plot %s: %s", alt, err)
        return {"png": None, "alt": alt, "stage": stage, "error": str(err)}


def _section(id_: str, title: str, missing: Data | None = None, **data: Any) -> Data:
    return {"id": id_, "title": title, "missing": missing, **data}


# --------------------------------------------------------------------------- sections


def params_section(inputs: Inputs) -> Data:
    """The resolved configuration, one table per params.yaml section."""
    cfg = inputs.cfg
    tables = [(name, list(values.items())) for name, values in cfg.to_dict().items() if isinstance(values, dict)]
    return _section("params", "Parameters (resolved)", profile=cfg.profile, tables=tables)


def sigmas_section(inputs: Inputs) -> Data:
    """The σ schedule: its plot and its first values."""
    sigmas = inputs.sigmas()
    if not sigmas:
        return _section("sigmas", "Noise levels", missing_ref("train", "sigmas.csv"))
    shown = ", ".join(f"{s:.4g}" for s in sigmas[:12]) + (f", … ({len(sigmas)} in all)" if len(sigmas) > 12 else "")
    return _section("sigmas", "Noise levels", plot=_plot(lambda: sigma_schedule_png(sigmas), "noise levels", "train"),
                    shown=shown)


def training_section(inputs: Inputs) -> Data:
    """Loss curves, the held-out loss per level and the last numbers of training."""
    title = "Training and validation loss"
    train_rows, val_rows = inputs.csv("train_log"), inputs.csv("val_loss")
    if not train_rows and not val_rows:
        return _section("training", title, missing_ref("train", "train_log.csv, val_loss.csv"))
    summary: list[tuple[str, Any]] = []
    if train_rows:
        last = train_rows[-1]
        summary += [("steps", last.get("step")), ("last training loss", last.get("loss"))]
        ips = sorted(v for v in plots.column(train_rows, "images_per_s") if math.isfinite(v))
        if ips:
            summary.append(("median images / s", f"{ips[len(ips) // 2]:.4g}"))
    if val_rows:
        summary.append((f"held-out loss at step {val_rows[-1].get('step')}", val_rows[-1].get("mean")))
    return _section(
        "training", title,
        loss_plot=_plot(lambda: plots.training_plot(train_rows or [], val_rows or []), "loss curves", "train"),
        train_missing=None if train_rows else missing_ref("train", "train_log.csv"),
        level_plot=_plot(lambda: plots.level_loss_plot(val_rows, inputs.sigmas()), "per-level loss", "train")
        if val_rows else None,
        val_missing=None if val_rows else missing_ref("train", "val_loss.csv"),
        summary=summary)


def samples_section(inputs: Inputs) -> Data:
    """The sample grid and the sampler that drew it."""
    return _section("samples", "Samples", grid=inputs.image("grid", "sample grid"),
                    sampler=sampler_text(inputs.sampler()))


def metrics_section(inputs: Inputs) -> Data:
    """Each score beside its real-vs-real floor and the real data's own score; the other values."""
    metrics = inputs.json("metrics")
    if metrics is None:
        return _section("metrics", "Sample quality", missing_ref("evaluate", "metrics.json"))
    paired, used = [], {"extractor", "note"}
    for key, value in metrics.items():
        floor_key = f"floor_{key}_train_vs_test"
        if key.startswith(("floor_", "reference_")) or floor_key not in metrics:
            continue
        reference = next((k for k in metrics if k.startswith(f"reference_{key}")), None)
        if isinstance(metrics.get(f"{key}_ci95"), list):  # the value with its 95 % bootstrap interval
            value = "{:.4g} [{:.4g}, {:.4g}]".format(value, *metrics[f"{key}_ci95"])
        paired.append((key, value, metrics[floor_key], metrics.get(reference) if reference else None))
        used |= {key, floor_key} | ({reference} if reference else set())
    for key in metrics:  # a reference value without a floor (e.g. the IS of the test split)
        if key.startswith("reference_") and key not in used:
            base = key[len("reference_"):].rsplit("_test", 1)[0]
            if base in metrics and base not in used:
                value = metrics[base]
                if isinstance(metrics.get(f"{base}_ci95"), list):
                    value = "{:.4g} [{:.4g}, {:.4g}]".format(value, *metrics[f"{base}_ci95"])
                paired.append((base, value, None, metrics[key]))
                used |= {base, key}
    used |= {"bits_per_dim", "bits_per_dim_se", "bpd_images"}
    rest = [(k, v) for k, v in metrics.items()
            if k not in used and not k.startswith("nn_") and not isinstance(v, (dict, list))]
    bpd = {k: metrics[k] for k in ("bits_per_dim", "bits_per_dim_se", "bpd_images") if k in metrics}
    return _section("metrics", "Sample quality", extractor=metrics.get("extractor", "not recorded"),
                    note=metrics.get("note"), paired=paired, n_samples=metrics.get("n_samples"),
                    n_floor=metrics.get("n_floor_train"), rest=rest, bpd=bpd,
                    resamples=metrics.get("bootstrap_resamples"), n_select=metrics.get("select_n_samples"),
                    memorisation=any(k.startswith("nn_") for k in metrics))


def checkpoints_section(inputs: Inputs) -> Data:
    """Fast FID and held-out loss of every snapshot, and the one selected."""
    rows = inputs.csv("checkpoint_fid")
    if not rows:
        return _section("checkpoints", "Checkpoint selection", missing_ref("evaluate", "checkpoint_fid.csv"))
    best = (inputs.json("metrics") or {}).get("best_checkpoint_step")
    if best is None:
        finite = [(f, s) for f, s in zip(plots.column(rows, "fid"), plots.column(rows, "step")) if math.isfinite(f)]
        best = min(finite)[1] if finite else None
    columns = [c for c in ("step", "fid", "dsm_loss") if c in rows[0]]
    return _section("checkpoints", "Checkpoint selection",
                    plot=_plot(lambda: plots.checkpoint_plot(rows, best), "checkpoint selection", "evaluate"),
                    columns=columns, rows=[[r.get(c) for c in columns] for r in rows])


def figures_section(inputs: Inputs) -> Data:
    """The paper's figures 1-6: 1-3 from the figures stage, 4-6 from sample, inpaint and evaluate."""
    numbers = inputs.json("figures_json") or {}
    paper = []
    for key, title, num_key in (
        ("fig1", "Figure 1: score estimation is accurate only near the modes", "fig1_score_accuracy"),
        ("fig2", "Figure 2: sliced score matching without noise fails", "fig2_ssm_noise"),
        ("fig3", "Figure 3: annealed vs plain Langevin dynamics", "fig3_langevin"),
    ):
        n = numbers.get(num_key)
        if key == "fig3" and isinstance(n, dict):
            n = {**n, "panel_rows": fig3_panels(n)}
        paper.append({"key": key, "title": title, "image": inputs.image(key, title),
                      "numbers": n if isinstance(n, dict) else None})
    gif = inputs.path("trajectory_gif")
    animation = gif.is_file() and gif.stat().st_size <= MAX_GIF_BYTES
    inpaint_dir = Path(inputs.cfg.paths.inpaint)
    skipped = inpaint_dir / "SKIPPED.txt"
    metrics = inputs.json("metrics") or {}
    return _section(
        "figures", "Paper figures 1–6", paper=paper,
        trajectory=inputs.image("trajectory", "trajectory"),
        animation=image_ref(gif, "trajectory animation", "sample") if animation else None,
        sampler=sampler_text(inputs.sampler()),
        skipped=skipped.read_text().strip() if skipped.is_file() else None,
        masks=[(mask, image_ref(inpaint_dir / f"{mask}.png", f"inpainting, {mask} mask", "inpaint"))
               for mask in inputs.cfg.inpaint.masks],
        neighbours=inputs.image("nearest_neighbours", "nearest neighbours"),
        nn_caption=metrics.get("nn_image_columns", "Each row: a sample, then its nearest training images."),
        nn_rows=[(k, v) for k, v in metrics.items() if k.startswith("nn_") and not isinstance(v, (dict, list))])


def timings_section(inputs: Inputs) -> Data:
    """Stage wall times from MLflow (when tracking is on) and the figures stage's own timings."""
    stage_times = mlflow_stage_times() if inputs.cfg.tracking.enabled else []
    figure_times = (inputs.json("figures_json") or {}).get("timings_s")
    return _section("timings", "Timings",
                    stages=[(t["stage"], f"{t['seconds']:.1f}", t["start"], t["run_id"]) for t in stage_times],
                    figures=[(k, f"{v:.1f}") for k, v in figure_times.items()]
                    if isinstance(figure_times, dict) else [])


def machine_section(inputs: Inputs) -> Data:
    """The machine that renders the report."""
    return _section("machine", "Machine", rows=machine_info())
