"""The run report: every section, embedded images only, and a graceful page when inputs are missing."""

from __future__ import annotations

import argparse
import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from ncsn.config import Config, load_config
from ncsn.figures.common import FIGURE_FILES
from ncsn.reporting import render_report
from tests.helpers import write_params

SECTION_IDS = ("summary", "params", "sigmas", "training", "samples", "metrics", "checkpoints", "figures",
               "timings", "machine")
MASKS = ("right_half", "center", "random")


class Links(HTMLParser):
    """Every src/href attribute and every section id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "srcset", "data", "action", "poster"):
            if name in attrs:
                self.links.append((tag, name, attrs[name] or ""))
        if tag == "section":
            self.sections.append(attrs.get("id"))


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


def png(path: Path, size=(40, 30), color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def fake_outputs(cfg: Config) -> None:
    """A tiny but complete outputs tree: the files every stage writes, with made-up numbers."""
    p = cfg.paths
    train, sample, evaluate, inpaint, figures = (Path(d) for d in (p.train, p.sample, p.evaluate, p.inpaint, p.figures))
    sigmas = [1.0 * 0.6 ** i for i in range(10)]
    write_csv(train / "sigmas.csv", ["level", "sigma"], [[i, s] for i, s in enumerate(sigmas)])
    write_csv(train / "train_log.csv", ["step", "loss", "images_per_s"],
              [[s, 1.0 / s, 900.0] for s in (10, 20, 30, 40)])
    write_csv(train / "val_loss.csv", ["step", "mean", *[f"level_{i}" for i in range(10)]],
              [[s, 0.5, *[0.5 + 0.01 * i for i in range(10)]] for s in (20, 40)])
    for name in ("grid.png", "trajectory.png"):
        png(sample / name)
    frames = [Image.new("RGB", (20, 20), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(sample / "trajectory.gif", save_all=True, append_images=frames[1:], duration=100)
    metrics = {"extractor": "ncsn-digit-classifier", "note": "classifier_* metrics are not comparable to Inception",
               "n_samples": 32, "classifier_fid": 550.1, "classifier_is": 1.02, "reference_classifier_is_test": 1.67,
               "floor_classifier_fid_train_vs_test": 3.2341, "n_floor_train": 32, "best_checkpoint_step": 40,
               "nn_pixel_ratio": 3.4, "nn_image_columns": "sample | 4 nearest training images in pixel space"}
    evaluate.mkdir(parents=True)
    (evaluate / "metrics.json").write_text(json.dumps(metrics))
    write_csv(evaluate / "checkpoint_fid.csv", ["step", "fid", "dsm_loss", "extractor"],
              [[20, 444.2, 391.6, "ncsn-digit-classifier"], [40, 444.0, 390.9, "ncsn-digit-classifier"]])
    png(evaluate / "nearest_neighbours.png")
    for mask in MASKS:
        png(inpaint / f"{mask}.png", color=(0, 0, 200))
    for key in ("score_accuracy", "ssm_noise", "langevin_mixing"):
        png(figures / FIGURE_FILES[key], size=(600, 200))
    numbers = {
        "fig1_score_accuracy": {"error_high_density": 0.26, "error_low_density": 3.47},
        "fig2_ssm_noise": {"bound_perturbed": -3.92e6, "clean": {"final": -2.3e7}, "perturbed": {"final": -2.6e6}},
        "fig3_langevin": {"true_weight": 0.2, "panels": {"plain_exact": {"weight": 0.511, "stderr": 0.014},
                                                         "annealed_exact": {"weight": 0.190, "stderr": 0.011}}},
        "timings_s": {"fig1_score_accuracy": 9.1},
    }
    (figures / FIGURE_FILES["numbers"]).write_text(json.dumps(numbers))


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return load_config(write_params(tmp_path))


def test_complete_run_has_every_section_and_only_embedded_images(cfg):
    fake_outputs(cfg)
    html = render_report(cfg)
    page = parse(html)
    assert page.sections == list(SECTION_IDS)
    assert "not available" not in html
    # 3 plots (sigmas, 2 training) + 1 checkpoint plot + grid + 3 figures + trajectory png/gif + 3 masks + neighbours
    images = [v for tag, name, v in page.links if tag == "img"]
    assert len(images) == 14
    assert all(v.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for v in images)
    # No request leaves the page: sources are data URIs, links are in-page anchors.
    for tag, name, value in page.links:
        assert value.startswith("data:") if name != "href" else value.startswith("#"), (tag, name, value[:60])
    assert "http://" not in html and "https://" not in html
    # The numbers the report promises.
    assert "ncsn-digit-classifier" in html and "3.234" in html  # extractor and real-vs-real floor
    assert "0.511" in html and "0.19" in html and "3.47" in html  # fig. 3 weights, fig. 1 error far from modes
    assert f"<b>{cfg.profile}</b>" in html and "mnist5k" in html


@pytest.mark.parametrize("stage", ["train", "sample", "evaluate", "inpaint", "figures"])
def test_each_missing_stage_is_named_in_place_of_its_outputs(cfg, stage):
    fake_outputs(cfg)
    for path in Path(getattr(cfg.paths, stage)).iterdir():
        path.unlink()
    html = render_report(cfg)
    assert parse(html).sections == list(SECTION_IDS)
    assert f"not available (run dvc repro {stage})" in html
    others = {"train", "sample", "evaluate", "inpaint", "figures"} - {stage}
    assert not any(f"(run dvc repro {s})" in html for s in others)


def test_an_empty_outputs_tree_still_gives_a_whole_page(cfg):
    html = render_report(cfg)
    assert parse(html).sections == list(SECTION_IDS)
    assert "Stage wall times: not recorded" in html
    assert "torch" in html  # the machine section needs no input


def test_a_malformed_csv_is_reported_not_raised(cfg):
    fake_outputs(cfg)
    (Path(cfg.paths.train) / "sigmas.csv").write_text("level,sigma\n0,abc\n")
    (Path(cfg.paths.evaluate) / "checkpoint_fid.csv").write_text("step\n")
    (Path(cfg.paths.evaluate) / "metrics.json").write_text("{not json")
    html = render_report(cfg)
    assert parse(html).sections == list(SECTION_IDS)


def test_report_stage_writes_the_file_and_logs_it(cfg):
    from ncsn.stages import report as stage

    fake_outputs(cfg)
    logged = []

    class Tracker:
        def log_artifact(self, path, artifact_path=None):
            logged.append((Path(path), artifact_path))

    stage.run(cfg, Tracker(), argparse.Namespace(out=None))
    path = Path(cfg.paths.report) / "report.html"
    assert path.is_file() and path.read_text().startswith("<!DOCTYPE html>")
    assert logged == [(path, "report")]
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_stage_wall_times_come_from_the_sibling_mlflow_runs(cfg, tmp_path):
    """Inside the report's MLflow run, the finished runs of the same pipeline give the stage times."""
    import dataclasses

    import mlflow

    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, enabled=True))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("report-test")
        with mlflow.start_run(experiment_id=experiment, run_name="pipeline"):
            for stage in ("prepare", "train"):
                with mlflow.start_run(experiment_id=experiment, run_name=stage, nested=True):
                    pass
            with mlflow.start_run(experiment_id=experiment, run_name="report", nested=True):
                html = render_report(cfg)
    finally:
        mlflow.set_tracking_uri(previous)
    timings = html.split('<section id="timings">')[1].split("</section>")[0]
    assert "<td>prepare</td>" in timings and "<td>train</td>" in timings
    assert "<td>report</td>" not in timings  # still running
    assert "not recorded" not in timings


def test_the_sampler_line_is_the_one_the_sample_stage_recorded(cfg):
    from ncsn.stages.sampler import resolve_sampler

    fake_outputs(cfg)
    assert "its resolved settings are not recorded" in render_report(cfg)
    spec = resolve_sampler(cfg.sample, [0.6 ** i for i in range(10)], n_steps_each=3, eps="auto")
    shards = Path(cfg.paths.sample) / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text(json.dumps({"sampler": spec.to_dict()}))
    html = render_report(cfg)
    assert spec.describe() in html and f"eps = {spec.eps:.3g} (auto: NCSNv2 technique 4)" in html
    assert f"{spec.evaluations_per_sample} network evaluations per sample" in html


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores mode bits: then /sys, if it refuses)."""
    import os
    import tempfile

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(name)
    pytest.skip("no read-only folder available to this user")


def test_report_into_a_read_only_folder_names_the_path_given(tmp_path, capsys):
    from ncsn.cli import main

    params = write_params(tmp_path)
    target = _read_only_folder(tmp_path) / "report.html"
    assert main(["--params", str(params), "report", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncsn report: error: ") and str(target) in err and ".tmp" not in err, err


def test_values_from_the_run_are_escaped(cfg):
    fake_outputs(cfg)
    metrics_path = Path(cfg.paths.evaluate) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["note"] = "<script>alert(1)</script> & more"
    metrics_path.write_text(json.dumps(metrics))
    html = render_report(cfg)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_outputs_of_another_dataset_or_run_are_named_in_their_sections(cfg):
    import hashlib
    import re

    fake_outputs(cfg)
    model = Path(cfg.paths.train) / "model.pt"
    model.write_bytes(b"stands for this run's model")
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    shards, evaluate, figures = (Path(cfg.paths.sample) / "shards", Path(cfg.paths.evaluate) / "metrics.json",
                                 Path(cfg.paths.figures) / FIGURE_FILES["numbers"])
    shards.mkdir()

    def write(sample_sha: str, evaluated: dict, fig2_dataset: str) -> str:
        (shards / "manifest.json").write_text(json.dumps({"model_sha256": sample_sha}))
        evaluate.write_text(json.dumps({**json.loads(evaluate.read_text()), **evaluated}))
        numbers = json.loads(figures.read_text())
        numbers["fig2_ssm_noise"]["dataset"] = fig2_dataset
        figures.write_text(json.dumps(numbers))
        html = render_report(cfg)
        return {s: re.findall(r'<p class="stale">From another dataset or run: ([^<]*)</p>', body)
                for s, body in re.findall(r'<section id="(\w+)">(.*?)</section>', html, re.S)}

    same = write(sha, {"dataset": "mnist5k", "model_sha256": sha}, "mnist5k")
    assert not any(same.values()), same
    stale = write("0" * 64, {"dataset": "folder", "model_sha256": sha}, "cifar10")
    assert stale["samples"] == [f"these samples were drawn by another model than {model} (an earlier run):"
                                " rerun dvc repro sample"]
    assert stale["metrics"] == stale["checkpoints"] == [
        "these metrics were measured on folder, not on this run&#39;s dataset mnist5k: rerun dvc repro evaluate"]
    assert len(stale["figures"]) == 3 and stale["figures"][-1].startswith("Figure 2 was drawn on cifar10")
    assert not stale["training"] and not stale["summary"]
    other_model = write(sha, {"dataset": "mnist5k", "model_sha256": "1" * 64}, "mnist5k")
    assert other_model["metrics"] == [f"these metrics were measured for another model than {model} (an earlier run):"
                                      " rerun dvc repro evaluate"]
