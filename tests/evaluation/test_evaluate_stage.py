"""The classifier and evaluate stages end to end on a tiny smoke run: metrics, checkpoint FIDs,
artifacts, registration, and the Inception path of the same stage with the stand-in extractor."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from ncsn.config import Config, PathsConfig, config_from_dict
from ncsn.evaluation import EvaluationError
from tests.evaluation.support import STAND_IN, RecordingTracker


def _stage_cfg(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Smoke settings, every output under ``tmp_path/outputs``, tracking off."""
    paths = {name: str(tmp_path / "outputs" / name) for name in PathsConfig.__dataclass_fields__}
    return config_from_dict({"profile": "smoke", "paths": paths, "tracking": {"enabled": False},
                             "train": {"n_iters": 20, "snapshot_freq": 10, "val_size": 32},
                             "model": {"ngf": 8}, **sections})


def _run(stage: str, cfg: Config, tracker: RecordingTracker) -> None:
    import importlib

    args = argparse.Namespace(model=None, out=None, n=None)  # the sample stage's options, at their defaults
    importlib.import_module(f"ncsn.stages.{stage}").run(cfg, tracker, args)


def test_classifier_and_evaluate_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from ncsn.stages.train import train

    cfg = _stage_cfg(tmp_path)
    out = tmp_path / "outputs"
    _run("prepare", cfg, RecordingTracker())
    with pytest.raises(EvaluationError, match="dvc repro train"):
        _run("evaluate", cfg, RecordingTracker())
    train(cfg, cfg.paths.prepare, cfg.paths.train)  # the train stage's library call
    _run("sample", cfg, RecordingTracker())
    _run("classifier", cfg, RecordingTracker())
    assert torch.load(out / "classifier" / "classifier.pt", weights_only=True)["trained"] is True
    assert 0.0 < json.loads((out / "classifier" / "metrics.json").read_text())["test_accuracy"] <= 1.0

    registered: list[dict[str, Any]] = []
    monkeypatch.setattr("ncsn.stages.evaluate._register",
                        lambda cfg, tracker, metrics: registered.append(metrics))
    tracker = RecordingTracker()
    _run("evaluate", cfg, tracker)
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["extractor"] == "ncsn-digit-classifier" and metrics["n_samples"] == cfg.sample.n_samples
    assert "not comparable to Inception" in metrics["note"] and "fid" not in metrics
    for key in ("classifier_is", "classifier_fid", "classifier_kid_mean", "reference_classifier_is_test",
                "floor_classifier_fid_train_vs_test", "nn_pixel_ratio", "nn_classifier_ratio"):
        assert math.isfinite(metrics[key]), key
    for key in ("classifier_is", "classifier_fid", "classifier_kid_mean"):  # 95 % bootstrap intervals
        low, high = metrics[f"{key}_ci95"]
        assert low < high, key
    assert metrics["bootstrap_resamples"] == cfg.evaluate.bootstrap_resamples > 0
    sets = metrics["classifier_fid_seed_sets"]  # EDM's way: disjoint seed sets, their min and mean
    assert len(sets) == cfg.evaluate.seed_sets == 2 and metrics["seed_set_samples"] == cfg.sample.n_samples // 2
    assert metrics["classifier_fid_seed_sets_min"] == min(sets) and all(math.isfinite(f) for f in sets)
    # bits/dim of a barely trained model: finite, worse than the uniform density's 8
    assert metrics["bpd_images"] == cfg.evaluate.bpd_images > 0 and 8.0 < metrics["bits_per_dim"] < 20.0
    assert 0.0 < metrics["bits_per_dim_se"] < 1.0
    logged = {k for m, _ in tracker.metrics for k in m}
    assert {"classifier_fid_ci95_low", "classifier_fid_ci95_high"} <= logged
    rows = (out / "evaluate" / "checkpoint_fid.csv").read_text().splitlines()
    assert rows[0].startswith("step,fid,dsm_loss,dsm_loss_level_0") and len(rows) == 1 + 2
    fids = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows[1:]}
    assert set(fids) == {10, 20} and metrics["best_checkpoint_step"] == min(fids, key=fids.get)
    assert metrics["final_checkpoint_step"] == 20
    assert (out / "evaluate" / "nearest_neighbours.png").stat().st_size > 0
    assert {p.name for p, _ in tracker.artifacts} == {"metrics.json", "checkpoint_fid.csv", "nearest_neighbours.png"}
    assert sorted(step for _, step in tracker.metrics if step is not None) == [10, 20]
    assert registered and registered[0]["best_checkpoint_step"] == metrics["best_checkpoint_step"]
    assert not list((out / "evaluate").glob(".fidelity-cache-*"))  # temporary feature cache removed

    # The Inception path of the same stage, with the stand-in extractor.
    inception_cfg = _stage_cfg(tmp_path, evaluate={"extractor": "inception", "weights_path": str(stand_in)})
    _run("evaluate", inception_cfg, RecordingTracker())
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["extractor"] == STAND_IN and len(metrics["extractor_weights_sha256"]) == 64
    assert {"is", "fid", "kid_mean", "floor_fid_train_vs_test", "fid_ci95", "is_ci95"} <= set(metrics)
    assert not any(k.startswith("classifier_") for k in metrics)

    # No extractor at all: Inception forced, its weights absent. The stage says why in one line,
    # writes what needs no feature network, selects by DSM loss and still registers.
    registered.clear()
    missing = tmp_path / "no-such-inception.pth"
    none_cfg = _stage_cfg(tmp_path, evaluate={"extractor": "inception", "weights_path": str(missing)})
    _run("evaluate", none_cfg, RecordingTracker())
    assert f"no FID/IS/KID: Inception weights missing: evaluate.weights_path = {missing}" in capsys.readouterr().err
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["extractor"] == "none" and "Inception weights missing" in metrics["note"]
    assert not any("fid" in k or k.endswith("_is") or "kid" in k for k in metrics), sorted(metrics)
    assert math.isfinite(metrics["nn_pixel_ratio"]) and 8.0 < metrics["bits_per_dim"] < 20.0
    losses = {int(r.split(",")[0]): float(r.split(",")[2])
              for r in (out / "evaluate" / "checkpoint_fid.csv").read_text().splitlines()[1:]}
    assert metrics["best_checkpoint_by"] == "dsm_loss" and metrics["best_checkpoint_step"] == min(losses, key=losses.get)
    assert registered and "classifier_fid" not in registered[0]
