"""Sample quality per network evaluation: classifier-FID of sampler settings on one trained network.

Usage::

    python bench/bench_sampler_quality.py --model outputs/train/model.pt \\
        --classifier outputs/classifier/classifier.pt --prepare outputs/prepare --n 500

Every setting draws the same ``--n`` samples (sample i from seed ``--seed + i``, the
uniform start and the noise of sample i do not depend on the setting's batch) and is
scored by the FID in the digit classifier's feature space (``classifier_fid``, as the
evaluate stage; not comparable to Inception FID) against the held-out split. Settings
(L = the network's number of levels):

* ``ald T eps``: annealed Langevin (paper Algorithm 1), L·T evaluations; each run is
  scored without and with the final denoising step (+1 evaluation);
* ``ald T t4``: the same with ε from NCSNv2 technique 4 for that T (``technique4_eps``);
* ``pc T``: predictor-corrector, T Langevin corrector steps per level (technique-4 ε)
  and an ancestral predictor step, L·(T + 1) evaluations (its last step denoises);
* ``pc T LO-HI``: the same with the correctors only at the levels with LO ≤ σ ≤ HI
  (``sample.corrector_sigmas``), L + T·(those levels) evaluations;
* ``euler N``, ``dpmpp_2m N``: the probability-flow ODE on EDM's schedule of N levels over the
  model's trained range (then 0), N evaluations; ``heun N``: EDM Algorithm 2, 2N − 1 evaluations;
  ``heun N churn``: the same with S_churn (S_tmin, S_tmax, S_noise from ``--s-tmin`` ...). These run
  through the pipeline's own code (``ncsn.stages.sampler``: ``sample.sampler``, ``sample.steps``),
  starting from u + σ_1 z, u uniform.

``--compare`` runs the sampler table of issue 24: every sampler at about 10, 20, 35 and 68
evaluations (Heun at 2N − 1 ≤ each; ALD and PC cannot go below L), on the same seeds.

``--bf16`` / ``--compile`` run the network as ``sample.bf16`` / ``sample.compile`` do.
Prints a table (and writes ``--csv``): setting, evaluations, classifier-FID, seconds.
The first line is the paper's setting (T = 100, ε = 2·10⁻⁵, 1,000 evaluations).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ncsn.data import load_split  # noqa: E402
from ncsn.evaluation.bootstrap import bootstrap_intervals  # noqa: E402
from ncsn.evaluation.distributed_features import extract_features  # noqa: E402
from ncsn.evaluation.extractor import CLASSIFIER_NAME, Extractor, ensure_registered  # noqa: E402
from ncsn.evaluation.fidelity import fidelity_metrics  # noqa: E402
from ncsn.stages.distributed import DistInfo  # noqa: E402
from ncsn.storage.score_model import initial_state, load_score_model, to_uint8  # noqa: E402
from ncsn.config import SampleConfig  # noqa: E402
from ncsn.core.sampling import (ODE_SAMPLERS, annealed_langevin_progressive, corrector_steps,  # noqa: E402
                                predictor_corrector, technique4_eps)
from ncsn.stages.sampler import resolve_sampler, sample_batch  # noqa: E402

# (kind, T, eps or corrector band): eps None means technique 4 for that T.
DEFAULT_SETTINGS = [("ald", 100, 2e-5), ("ald", 20, 2e-5), ("ald", 10, 2e-5),
                    ("ald", 5, None), ("ald", 10, None), ("ald", 19, None),
                    ("pc", 0, None), ("pc", 1, None), ("pc", 4, None), ("pc", 9, None), ("pc", 19, None)]


# issue 24's table: ≈ 10, 20, 35, 68 evaluations per sample for every sampler (heun 2N − 1 ≤ each).
COMPARE_SETTINGS = [*[(kind, n, None) for kind in ("euler", "dpmpp_2m") for n in (10, 20, 35, 68)],
                    *[("heun", n, None) for n in (5, 10, 18, 34)], ("heun", 10, 10.0), ("heun", 18, 10.0),
                    ("pc", 0, None), ("pc", 2, (0.1, 1.0)), ("ald", 1, None)]


def parse_setting(text: str) -> tuple[str, int, float | tuple[float, float] | None]:
    """``ald:T:EPS``, ``ald:T:t4``, ``pc:T``, ``pc:T:LO-HI``, ``euler:N``, ``dpmpp_2m:N``, ``heun:N`` or ``heun:N:CHURN``."""
    parts = text.split(":")
    kind, steps = parts[0], int(parts[1])
    if kind in ODE_SAMPLERS:
        return kind, steps, float(parts[2]) if len(parts) > 2 else None
    if kind not in ("ald", "pc"):
        raise argparse.ArgumentTypeError(f"unknown sampler {kind!r}")
    if kind == "pc":
        if len(parts) < 3:
            return kind, steps, None
        lo, hi = (float(v) for v in parts[2].split("-"))
        return kind, steps, (lo, hi)
    eps = None if len(parts) < 3 or parts[2] == "t4" else float(parts[2])
    return kind, steps, eps


def draw(model, seeds: list[int], kind: str, steps: int, eps: float, batch: int,
         band: tuple[float, float] | None = None) -> dict[str, torch.Tensor]:
    """uint8 samples per variant of one run: {"plain", "denoised"} for ALD, {"pc"} for PC."""
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(seeds), batch):
        x0, gens = initial_state(model, seeds[start:start + batch])
        if kind == "ald":
            last = None
            for level, x in annealed_langevin_progressive(model.score(), x0, model.sigmas, n_steps_each=steps, eps=eps,
                                                          generator=gens, denoise=True):
                if level == len(model.sigmas) - 1:
                    last = x
            out.setdefault("plain", []).append(to_uint8(last, logit_transform=model.logit_transform))
            out.setdefault("denoised", []).append(to_uint8(x, logit_transform=model.logit_transform))
        else:
            x = predictor_corrector(model.score(), x0, model.sigmas, n_steps_each=steps, eps=eps, generator=gens,
                                    corrector_sigmas=band)
            out.setdefault("pc", []).append(to_uint8(x, logit_transform=model.logit_transform))
    return {k: torch.cat(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/train/model.pt")
    parser.add_argument("--classifier", default="outputs/classifier/classifier.pt")
    parser.add_argument("--prepare", default="outputs/prepare", help="the prepare stage's folder (test split)")
    parser.add_argument("--n", type=int, default=500, help="samples per setting")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None,
                        help="e.g. ald:100:2e-5 ald:10:t4 pc:9 (default: the table in the docstring)")
    parser.add_argument("--compare", action="store_true", help="every sampler at ~10/20/35/68 evaluations")
    parser.add_argument("--s-tmin", type=float, default=0.025, help="heun churn: S_tmin (EDM's 0.05, halved: data in [0, 1])")
    parser.add_argument("--s-tmax", type=float, default=25.0, help="heun churn: S_tmax (EDM's 50, halved)")
    parser.add_argument("--s-noise", type=float, default=1.003, help="heun churn: S_noise")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of each FID interval")
    parser.add_argument("--use-ema", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the network (sample.bf16)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (sample.compile)")
    args = parser.parse_args()

    model = load_score_model(args.model, "cpu", use_ema=args.use_ema, bf16=args.bf16, compile=args.compile)
    test = load_split(args.prepare, "test").data
    extractor = Extractor("classifier", CLASSIFIER_NAME, "classifier_", rgb=False, has_is=True,
                          weights_path=Path(args.classifier))
    seeds = list(range(args.seed, args.seed + args.n))
    sigmas = model.sigmas.tolist()
    L = len(sigmas)

    def fid(images: torch.Tensor) -> float:
        return fidelity_metrics(images, test, extractor, isc=False, kid=False, seed=args.seed)["classifier_fid"]

    ensure_registered()
    fid_layer = FEATURE_EXTRACTORS_REGISTRY[CLASSIFIER_NAME].get_default_feature_layer_for_metric("fid")
    test_features = extract_features(test, extractor, batch_size=500, device=torch.device("cpu"), dist=DistInfo())

    def scores(images: torch.Tensor) -> tuple[float, str, float, float, float]:
        """classifier-FID, its 95 % bootstrap interval, classifier-IS, precision and recall of ``images``."""
        m = fidelity_metrics(images, test, extractor, isc=True, kid=False, prc=True, seed=args.seed)
        features = extract_features(images, extractor, batch_size=500, device=torch.device("cpu"), dist=DistInfo())
        low, high = bootstrap_intervals(features, test_features, prefix="", fid_layer=fid_layer, isc_layer=None,
                                        kid_subset_size=0, resamples=args.resamples, seed=args.seed)["fid_ci95"]
        return (m["classifier_fid"], f"[{low:.2f}, {high:.2f}]", m["classifier_is"], m["classifier_precision"],
                m["classifier_recall"])

    train = load_split(args.prepare, "train").data
    floor_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:args.n]
    print(f"model {args.model} (step {model.checkpoint['step']}, {model.checkpoint['config']['model']['arch']},"
          f" L = {L}, σ {sigmas[0]:.3g} → {sigmas[-1]:.3g}); {args.n} samples per setting, seeds"
          f" {args.seed}..{args.seed + args.n - 1}; classifier-FID against {len(test)} held-out images;"
          f" network in {'bf16 autocast' if args.bf16 else 'float32'}{', compiled' if args.compile else ''}")
    print(f"reference: {args.n} training images vs held-out: classifier-FID {fid(train[floor_idx]):.3f}", flush=True)
    header = (f"{'sampler':<48} {'evals':>6} {'classifier-FID':>15} {'95 % interval':>15} {'IS':>6} {'precision':>9}"
              f" {'recall':>6} {'seconds':>8}")
    print(header)
    print("-" * len(header))
    rows = []
    for kind, steps, eps in args.settings or (COMPARE_SETTINGS if args.compare else DEFAULT_SETTINGS):
        if kind in ODE_SAMPLERS:
            churn = eps or 0.0
            cfg = SampleConfig.defaults(sampler=kind, steps=steps, churn=churn, s_tmin=args.s_tmin, s_tmax=args.s_tmax,
                                        s_noise=args.s_noise)
            spec = resolve_sampler(cfg, model.sigmas)
            start = time.perf_counter()
            images = torch.cat([to_uint8(sample_batch(model, seeds[i:i + args.batch], spec),
                                         logit_transform=model.logit_transform)
                                for i in range(0, len(seeds), args.batch)])
            seconds = time.perf_counter() - start
            name = f"{kind} N={steps}" + (f" churn={churn:g}" if churn else "")
            value, interval, inception, precision, recall = scores(images)
            rows.append([name, spec.evaluations_per_sample, value, interval, inception, precision, recall, seconds])
            print(f"{name:<48} {spec.evaluations_per_sample:>6} {value:>15.3f} {interval:>15} {inception:>6.2f}"
                  f" {precision:>9.3f} {recall:>6.3f} {seconds:>8.0f}", flush=True)
            continue
        band = eps if kind == "pc" else None
        eps = None if kind == "pc" else eps
        rule = "technique 4" if eps is None else "fixed"
        if eps is None:
            eps = technique4_eps(sigmas, max(steps, 1))
        start = time.perf_counter()
        samples = draw(model, seeds, kind, steps, eps, args.batch, band)
        seconds = time.perf_counter() - start
        for variant, images in samples.items():
            if kind == "ald":
                name = f"ALD T={steps} eps={eps:.3g} ({rule})" + (" + denoise" if variant == "denoised" else "")
                evals = L * steps + (variant == "denoised")
            else:
                name = f"PC T={steps} eps={eps:.3g} (technique 4)"
                if band is not None:
                    name += f" at sigma {band[0]:g}-{band[1]:g}"
                evals = L + sum(corrector_steps(sigmas, steps, band))  # a predictor step per level + correctors
            value, interval, inception, precision, recall = scores(images)
            rows.append([name, evals, value, interval, inception, precision, recall, seconds])
            print(f"{name:<48} {evals:>6} {value:>15.3f} {interval:>15} {inception:>6.2f} {precision:>9.3f}"
                  f" {recall:>6.3f} {seconds:>8.0f}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["sampler", "evaluations", "classifier_fid", "classifier_fid_ci95", "classifier_is",
                             "precision", "recall", "seconds", "n_samples"])
            writer.writerows([*row, args.n] for row in rows)
    best = rows[0][2] if rows else math.nan  # rows: name, evaluations, FID, its interval, IS, P, R, seconds
    cheap = [r for r in rows if r[2] <= best and r[1] < rows[0][1]]
    if cheap:
        r = min(cheap, key=lambda r: r[1])
        print(f"cheapest setting at or below the first row's FID ({best:.3f}): {r[0]}, {r[1]} evaluations")


if __name__ == "__main__":
    main()
