"""Evaluate the samples: IS / FID / KID, checkpoint selection, and a memorisation check.

Reads the prepare stage's splits, the sample stage's shards (drawn from ``model.pt``),
the training snapshots and, for digits, the classifier. Writes into ``paths.evaluate``::

    metrics.json             every number, with the feature extractor and sample counts
    checkpoint_fid.csv       fast FID + held-out DSM loss per snapshot (DVC plot)
    nearest_neighbours.png   each row: a sample, then its nearest training images

Metric keys name their feature space: ``fid``/``is``/``kid_mean`` are Inception numbers;
``classifier_fid``/``classifier_is``/... come from the digit classifier and are **not
comparable to Inception numbers**; ``raw_fid`` compares 2-D points directly. Beside them:
the same metrics for real data (``reference_*``: IS of the test split; ``floor_*``: training
vs test images, the best a model can expect with this many samples).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ncsn.config import Config

log = logging.getLogger(__name__)

MAX_NN_QUERIES = 1000  # samples (and test images) whose nearest training image is searched
NN_SHOWN = 4  # neighbours shown per feature space in nearest_neighbours.png


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _memorisation(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor, classifier_path: Path,
                  cfg: Config, device: torch.device, out_path: Path) -> dict[str, Any]:
    """Nearest-neighbour statistics and the picture (see ``ncsn.evaluation.memorisation``)."""
    from ncsn.evaluation import EvaluationError
    from ncsn.evaluation.classifier import load_classifier, predict
    from ncsn.evaluation.memorisation import (distance_stats, nearest_neighbours, save_neighbours_image,
                                              save_neighbours_scatter)

    n_query = min(len(samples), MAX_NN_QUERIES)
    queries, test_q = samples[:n_query], test[:min(len(test), MAX_NN_QUERIES)]
    k = min(NN_SHOWN, len(train))
    grid = min(cfg.evaluate.nn_grid, n_query)
    space = "raw" if samples.ndim == 2 else "pixel"
    d_s, i_s = nearest_neighbours(queries, train, k, device=device)
    d_t, _ = nearest_neighbours(test_q, train, 1, device=device)
    out: dict[str, Any] = {"nn_n_queries": n_query, "nn_n_test": len(test_q), "nn_n_train": len(train)}
    out.update(distance_stats(d_s[:, 0], d_t[:, 0], space))
    if samples.ndim == 2:
        save_neighbours_scatter(queries[:grid], train, i_s[:grid], out_path)
        return out
    groups = [i_s[:grid]]
    try:
        clf = load_classifier(classifier_path, device)
    except EvaluationError as err:  # no labels, or no classifier stage run: pixel space only
        log.info("memorisation check in pixel space only (%s)", err)
        clf = None
    if clf is not None and clf.spec.channels == samples.shape[1] and clf.spec.image_size == samples.shape[-1]:
        f_train, f_q, f_t = (predict(clf, x)[1] for x in (train, queries, test_q))
        fd_s, fi_s = nearest_neighbours(f_q, f_train, k, device=device)
        fd_t, _ = nearest_neighbours(f_t, f_train, 1, device=device)
        out.update(distance_stats(fd_s[:, 0], fd_t[:, 0], "classifier"))
        groups.append(fi_s[:grid])
    save_neighbours_image(queries[:grid], train, groups, out_path)
    out["nn_image_columns"] = "sample | " + " | ".join(
        f"{k} nearest training images in {name} space" for name in ("pixel", "classifier")[:len(groups)])
    return out


def _register(cfg: Config, tracker, metrics: dict[str, Any]) -> None:
    """Hand the model and its metrics to the model registry, when that module exists."""
    try:
        from ncsn.registry import register_and_promote
    except ImportError as err:
        log.warning("model registry unavailable (%s): model.pt not registered", err)
        return
    register_and_promote(cfg, tracker, checkpoint=Path(cfg.paths.train) / "model.pt", metrics=metrics)


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Evaluate ``paths.sample`` against the held-out split; write ``paths.evaluate``."""
    from ncsn.checkpoint import check_compatible, list_checkpoints, load_checkpoint
    from ncsn.data import load_split
    from ncsn.distributed import resolve_device
    from ncsn.evaluation import EvaluationError
    from ncsn.evaluation.extractor import resolve_extractor
    from ncsn.evaluation.fidelity import fidelity_metrics
    from ncsn.evaluation.json_csv import write_json
    from ncsn.evaluation.selection import best_snapshot, score_snapshots, write_scores_csv
    from ncsn.shards import read_samples

    ev = cfg.evaluate
    for key, value, least in (("kid_subset_size", ev.kid_subset_size, 2),
                              ("select_steps_each", ev.select_steps_each, 1), ("nn_grid", ev.nn_grid, 1)):
        if value < least:
            raise EvaluationError(f"evaluate.{key} = {value} is invalid; it must be >= {least}")
    device = resolve_device(cfg.base.device)
    out_dir = Path(cfg.paths.evaluate)
    train_dir = Path(cfg.paths.train)
    classifier_path = Path(cfg.paths.classifier) / "classifier.pt"

    # Inputs, each with the command that makes it.
    train = load_split(cfg.paths.prepare, "train")
    test = load_split(cfg.paths.prepare, "test")
    model_path = train_dir / "model.pt"
    if not model_path.is_file():
        raise EvaluationError(f"{model_path} not found; run the train stage first: dvc repro train")
    # A model.pt left by another configuration would be scored (and registered) under the wrong name.
    check_compatible(load_checkpoint(model_path), arch=cfg.model.arch, dataset=cfg.base.dataset, source=model_path)
    snapshots = list_checkpoints(train_dir / "snapshots")
    if not snapshots:
        raise EvaluationError(f"no snapshots in {train_dir / 'snapshots'}; run the train stage first: dvc repro train")
    samples, _ = read_samples(Path(cfg.paths.sample) / "shards")
    if samples.shape[1:] != test.data.shape[1:]:
        raise EvaluationError(f"samples are {tuple(samples.shape[1:])} but the data are {tuple(test.data.shape[1:])};"
                              " rerun the sample stage: dvc repro sample")
    extractor = resolve_extractor(cfg, vector_data=samples.ndim == 2, classifier_path=classifier_path)
    p = extractor.prefix
    log.info("evaluating %d samples with %s", len(samples), extractor.name)

    metrics: dict[str, Any] = {"extractor": extractor.name, "note": extractor.note}
    if extractor.weights_sha256:
        metrics["extractor_weights_sha256"] = extractor.weights_sha256
    metrics |= {"n_samples": len(samples), "n_test": len(test), "n_train": len(train)}
    common = dict(device=device, kid_subset_size=cfg.evaluate.kid_subset_size, seed=cfg.base.seed)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(".fidelity-cache-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        cache_dir = Path(tempfile.mkdtemp(dir=out_dir, prefix=".fidelity-cache-"))
    except OSError as err:
        raise EvaluationError(f"cannot write {out_dir}: {err.strerror or err}") from None
    try:
        # 1. The samples against the held-out split.
        metrics |= fidelity_metrics(samples, test.data, extractor, prc=True, cache_dir=cache_dir, **common)
        # 2. Real data through the same metrics: IS of the test split, and train vs test with as
        #    many training images as there are samples (FID/KID depend on the sample count).
        if extractor.has_is:
            ref = fidelity_metrics(test.data, None, extractor, fid=False, kid=False, cache_dir=cache_dir, **common)
            metrics[f"reference_{p}is_test"] = ref[f"{p}is"]
        n_floor = min(len(samples), len(train))
        floor_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.base.seed))[:n_floor]
        floor = fidelity_metrics(train.data[floor_idx], test.data, extractor, isc=False, prc=True,
                                 cache_dir=cache_dir, **common)
        metrics |= {f"floor_{k}_train_vs_test": v for k, v in floor.items() if not k.endswith("kid_subset_size")}
        metrics["n_floor_train"] = n_floor

        # 3. Checkpoint selection: fast FID per snapshot, same seeds for all.
        def log_score(score) -> None:
            tracker.log_metrics({f"checkpoint_{p}fid": score.fid, "checkpoint_dsm_loss": score.dsm_loss},
                                step=score.step)

        scores = score_snapshots(snapshots, test.data, test.data[:cfg.train.val_size], extractor, cfg,
                                 device=device, cache_dir=cache_dir, on_score=log_score)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    write_scores_csv(scores, out_dir / "checkpoint_fid.csv", extractor)
    best = best_snapshot(scores)
    final_step = int(load_checkpoint(model_path)["step"])
    metrics |= {
        "best_checkpoint_step": best.step,
        f"best_checkpoint_{p}fid": best.fid,
        "best_checkpoint_path": str(dict(snapshots)[best.step]),
        "final_checkpoint_step": final_step,
        "select_n_samples": cfg.evaluate.select_samples,
        "select_steps_each": cfg.evaluate.select_steps_each,
    }

    # 4. Memorisation: nearest training images of samples vs of held-out images.
    metrics |= _memorisation(samples, train.data, test.data, classifier_path, cfg, device,
                             out_dir / "nearest_neighbours.png")

    write_json(out_dir / "metrics.json", metrics)
    tracker.log_metrics(_numeric(metrics))
    tracker.set_tags({"extractor": extractor.name, "best_checkpoint_step": str(best.step)})
    for name in ("metrics.json", "checkpoint_fid.csv", "nearest_neighbours.png"):
        tracker.log_artifact(out_dir / name, "evaluate")
    _register(cfg, tracker, metrics)
    space = "raw" if samples.ndim == 2 else "pixel"
    shown = [f"{p}is", f"{p}fid", f"{p}kid_mean", f"reference_{p}is_test", f"floor_{p}fid_train_vs_test",
             "best_checkpoint_step", f"nn_{space}_ratio"]
    print(f"{extractor.name}, {len(samples)} samples: "
          + ", ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics))
