"""Evaluate the samples: IS / FID / KID, checkpoint selection, and a memorisation check.

Reads the prepare stage's splits, the sample stage's shards (drawn from ``model.pt``),
the training snapshots and, for digits, the classifier. Writes into ``paths.evaluate``::

    metrics.json             every number, with the feature extractor and sample counts,
                             and each class's share of the samples (``class_balance``)
    checkpoint_fid.csv       fast FID + held-out DSM loss per snapshot (DVC plot)
    nearest_neighbours.png   each row: a sample, then its nearest training images

Metric keys name their feature space: ``fid``/``is``/``kid_mean`` are Inception numbers;
``classifier_fid``/``classifier_is``/... come from the digit classifier and are **not
comparable to Inception numbers**; ``ssl_fid``/``ssl_kid_mean`` come from the self-supervised
encoder of a dataset without labels (same data only); ``raw_fid`` compares 2-D points directly.
When no extractor can be had (Inception's weights absent and none chosen in their place) the
stage says why in one line, writes the metrics that need none (nearest neighbours, bits/dim),
selects the checkpoint by held-out DSM loss, and registers the model without a FID. Beside them:
the same metrics for real data (``reference_*``: IS of the test split; ``floor_*``: training
vs test images, the best a model can expect with this many samples).

Under ``torchrun --nproc_per_node N`` the ranks share the feature extraction and the
checkpoint-selection sampling (the numbers are those of one process); rank 0 writes and registers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ncsn.config import Config

log = logging.getLogger(__name__)


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of metrics.json as MLflow metrics; an interval ``x_ci95: [lo, hi]`` as ``x_ci95_low``, ``x_ci95_high``."""
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key, value in metrics.items():
        if key.endswith("_ci95"):
            out[f"{key}_low"], out[f"{key}_high"] = map(float, value)
    return out


def _register(cfg: Config, tracker, metrics: dict[str, Any]) -> None:
    """Hand the final model and its metrics to the model registry."""
    from ncsn.storage.checkpoint import final_model_path
    from ncsn.tracking.registry import register_and_promote

    register_and_promote(cfg, tracker, checkpoint=final_model_path(cfg), metrics=metrics)


def run(cfg: Config, tracker, args: argparse.Namespace) -> None:
    """Evaluate ``paths.sample`` against the held-out split; write ``paths.evaluate``."""
    from ncsn.storage.checkpoint import (checkpoint_sigmas, file_sha256, final_model_path, list_checkpoints,
                                         load_final_model)
    from ncsn.data import load_split
    from ncsn.stages.devices import resolve_device
    from ncsn.stages.distributed import init_distributed, local_rank
    from ncsn.evaluation import EvaluationError
    from ncsn.evaluation.class_balance import class_balance_metrics
    from ncsn.evaluation.extractor import ExtractorUnavailable, resolve_extractor
    from ncsn.storage.tables import write_json
    from ncsn.evaluation.memorisation_check import memorisation_metrics
    from ncsn.evaluation.sample_quality import fidelity_cache, sample_quality_metrics
    from ncsn.evaluation.selection import best_snapshot, score_snapshots, write_scores_csv
    from ncsn.stages.sampler import resolve_sampler
    from ncsn.storage.shards import read_samples

    device, out_dir = resolve_device(cfg.base.device, local_rank()), Path(cfg.paths.evaluate)
    dist = init_distributed(device)
    classifier_path = Path(cfg.paths.classifier) / "classifier.pt"
    train, test = load_split(cfg.paths.prepare, "train"), load_split(cfg.paths.prepare, "test")
    if not final_model_path(cfg).is_file():
        raise EvaluationError(f"{final_model_path(cfg)} not found; run the train stage first: dvc repro train")
    # A model.pt left by another configuration would be scored (and registered) under the wrong name.
    _, final = load_final_model(cfg)
    snapshots = list_checkpoints(Path(cfg.paths.train) / "snapshots")
    if not snapshots:
        raise EvaluationError(f"no snapshots in {Path(cfg.paths.train) / 'snapshots'}; run the train stage first:"
                              " dvc repro train")
    samples, _ = read_samples(Path(cfg.paths.sample) / "shards")
    if samples.shape[1:] != test.data.shape[1:]:
        raise EvaluationError(f"samples are {tuple(samples.shape[1:])} but the data are {tuple(test.data.shape[1:])};"
                              " rerun the sample stage: dvc repro sample")
    try:
        extractor = resolve_extractor(cfg, vector_data=samples.ndim == 2, classifier_path=classifier_path)
        log.info("evaluating %d samples with %s", len(samples), extractor.name)
    except ExtractorUnavailable as err:  # the metrics that need no feature network, and the reason
        extractor, no_extractor = None, str(err)
        print(f"evaluate: no feature extractor, so no FID/IS/KID: {no_extractor}", file=sys.stderr)
    p = extractor.prefix if extractor is not None else ""
    select_spec = resolve_sampler(cfg.sample, checkpoint_sigmas(final), n_steps_each=cfg.evaluate.select_steps_each)
    tracker.log_params({f"select_sampler.{k}": v for k, v in select_spec.to_dict().items()})

    def log_score(score) -> None:
        fid = {f"checkpoint_{p}fid": score.fid} if extractor is not None else {}
        tracker.log_metrics({**fid, "checkpoint_dsm_loss": score.dsm_loss}, step=score.step)

    with fidelity_cache(out_dir, dist) as cache_dir:
        if extractor is not None:
            metrics = sample_quality_metrics(samples, train.data, test.data, extractor, device=device,
                                             seed=cfg.base.seed, kid_subset_size=cfg.evaluate.kid_subset_size,
                                             cache_dir=cache_dir, bootstrap_resamples=cfg.evaluate.bootstrap_resamples,
                                             seed_sets=cfg.evaluate.seed_sets, dist=dist)
        else:
            metrics = {"extractor": "none", "note": f"no FID, IS or KID: {no_extractor}",
                       "n_samples": len(samples), "n_test": len(test), "n_train": len(train)}
        scores = score_snapshots(snapshots, test.data, test.data[:cfg.train.val_size], extractor, cfg, select_spec,
                                 device=device, cache_dir=cache_dir, on_score=log_score, dist=dist)
    if not dist.is_main:
        return
    write_scores_csv(scores, out_dir / "checkpoint_fid.csv", extractor)
    best = best_snapshot(scores)
    metrics |= {
        "dataset": cfg.base.dataset,  # what the report checks this file against
        "model_sha256": file_sha256(final_model_path(cfg)),
        "best_checkpoint_step": best.step,
        **({f"best_checkpoint_{p}fid": best.fid} if extractor is not None else {}),
        "best_checkpoint_by": "fid" if extractor is not None else "dsm_loss",
        "best_checkpoint_path": str(dict(snapshots)[best.step]),
        "final_checkpoint_step": int(final["step"]),
        "select_n_samples": cfg.evaluate.select_samples,
        "select_steps_each": cfg.evaluate.select_steps_each,
    }
    metrics |= memorisation_metrics(samples, train.data, test.data, classifier_path, grid=cfg.evaluate.nn_grid,
                                    device=device, out_path=out_dir / "nearest_neighbours.png")
    metrics |= class_balance_metrics(samples, train.labels, classifier_path, device=device)
    if cfg.evaluate.bpd_images and test.data.ndim == 4:
        from ncsn.evaluation.likelihood import likelihood_metrics
        from ncsn.storage.score_model import load_score_model

        model, start = load_score_model(final, device, use_ema=cfg.sample.use_ema), time.perf_counter()
        metrics |= likelihood_metrics(model, test.data[:cfg.evaluate.bpd_images], seed=cfg.base.seed,
                                      tolerance=cfg.evaluate.bpd_tolerance)
        seconds = time.perf_counter() - start  # the cost goes to the log and MLflow, not to metrics.json
        log.info("bits/dim of %d test images in %.1f s", cfg.evaluate.bpd_images, seconds)
        tracker.log_metrics({"bpd_seconds": seconds})

    write_json(out_dir / "metrics.json", metrics)
    tracker.log_metrics(_numeric(metrics))
    tracker.set_tags({"extractor": metrics["extractor"], "best_checkpoint_step": str(best.step)})
    for name in ("metrics.json", "checkpoint_fid.csv", "nearest_neighbours.png"):
        tracker.log_artifact(out_dir / name, "evaluate")
    _register(cfg, tracker, metrics)
    space = "raw" if samples.ndim == 2 else "pixel"
    shown = [f"{p}is", f"{p}fid", f"{p}kid_mean", f"reference_{p}is_test", f"floor_{p}fid_train_vs_test",
             "bits_per_dim", "best_checkpoint_step", f"nn_{space}_ratio", "class_share_ratio_min", "class_share_ratio_max"]
    print(f"{metrics['extractor']}, {len(samples)} samples: " + ", ".join(
        f"{k}={metrics[k]:.4g}" + (" [{:.4g}, {:.4g}]".format(*metrics[f"{k}_ci95"]) if f"{k}_ci95" in metrics else "")
        for k in shown if k in metrics))
