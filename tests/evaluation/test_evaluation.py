"""Evaluation: known answers for classifier-IS/FID/KID, the Inception path, checkpoint
selection, the memorisation check, and the classifier / evaluate stages end to end."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ncsn.config import Config, PathsConfig, config_from_dict
from ncsn.evaluation import EvaluationError
from ncsn.evaluation import extractor as extractor_mod
from ncsn.evaluation.classifier import accuracy, load_classifier, save_classifier, train_classifier
from ncsn.evaluation.extractor import CLASSIFIER_NAME, INCEPTION_FILE, Extractor, resolve_extractor
from ncsn.evaluation.fidelity import fidelity_metrics
from ncsn.evaluation.memorisation import distance_stats, nearest_neighbours
from ncsn.evaluation.selection import SnapshotScore, best_snapshot

MEASURED: dict[str, Any] = {}  # printed at the end of the session (pytest -s) for the record


class RecordingTracker:
    """The Tracker methods the stages may use, recorded."""

    def __init__(self) -> None:
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.artifacts: list[tuple[Path, str | None]] = []
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        assert all(isinstance(v, float) for v in metrics.values()), metrics
        self.metrics.append((dict(metrics), step))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        assert Path(path).is_file(), path
        self.artifacts.append((Path(path), artifact_path))

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Two CPU cores shared by several processes: one torch thread is steadier (and, under
    contention, several times faster) than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        try:  # numpy's BLAS too (torch-fidelity's KID): spinning BLAS threads cost 3x under contention
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """mnist5k as the prepare stage splits it: 4,000 train / 1,000 test digits."""
    from ncsn.data import load_split, prepare

    out = tmp_path_factory.mktemp("prepare")
    prepare(config_from_dict({"profile": "smoke"}), out)
    train, test = load_split(out, "train"), load_split(out, "test")
    return {"train": train.data, "train_labels": train.labels, "test": test.data, "test_labels": test.labels}


@pytest.fixture(scope="session")
def classifier(digits: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Extractor:
    """The digit classifier trained with the ``cpu`` profile's settings, as a torch-fidelity extractor."""
    cfg = config_from_dict({"profile": "cpu"}).classifier
    start = time.perf_counter()
    with one_thread():
        model = train_classifier(digits["train"], digits["train_labels"], cfg, seed=0, progress=False)
    MEASURED["classifier_train_seconds"] = time.perf_counter() - start
    acc = accuracy(model, digits["test"], digits["test_labels"])
    MEASURED["classifier_test_accuracy"] = acc
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    save_classifier(model, path, dataset="mnist5k", step=cfg.n_iters, test_accuracy=acc)
    return Extractor("classifier", CLASSIFIER_NAME, "classifier_", rgb=False, has_is=True, weights_path=path)


@pytest.fixture(scope="session")
def noise(digits: dict[str, torch.Tensor]) -> torch.Tensor:
    """Uniform uint8 noise shaped like the test split."""
    return torch.randint(0, 256, digits["test"].shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session", autouse=True)
def _report() -> Any:
    yield
    if MEASURED:
        print("\nmeasured:", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in MEASURED.items()}))


# --------------------------------------------------------------------------- classifier metrics


def test_classifier_accuracy_and_safe_file(classifier: Extractor) -> None:
    payload = torch.load(classifier.weights_path, weights_only=True)  # plain data only
    assert payload["format"] == "ncsn-classifier/1" and payload["config"]["num_classes"] == 10
    assert payload["test_accuracy"] >= 0.97  # cpu profile: 600 steps at batch 128
    assert not load_classifier(classifier.weights_path).training


def test_classifier_training_is_deterministic(digits) -> None:
    cfg = config_from_dict({"profile": "smoke", "classifier": {"n_iters": 5, "batch_size": 16}}).classifier
    a, b = (train_classifier(digits["train"][:200], digits["train_labels"][:200], cfg, seed=3, progress=False)
            for _ in range(2))
    c = train_classifier(digits["train"][:200], digits["train_labels"][:200], cfg, seed=4, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_classifier_inception_score_known_answers(classifier: Extractor, digits, noise) -> None:
    real = fidelity_metrics(digits["test"], None, classifier, fid=False, kid=False)
    rand = fidelity_metrics(noise, None, classifier, fid=False, kid=False)
    MEASURED.update({"classifier_is_test": real["classifier_is"], "classifier_is_noise": rand["classifier_is"]})
    assert set(real) == {"classifier_is", "classifier_is_std", "classifier_is_splits"}  # never a bare "is"
    assert real["classifier_is"] >= 8.0  # 10 balanced, confidently classified classes
    assert rand["classifier_is"] < 1.5  # noise: one arbitrary class, whatever the image


def test_classifier_fid_kid_known_answers(classifier: Extractor, digits, noise) -> None:
    train, test = digits["train"][:1000], digits["test"]
    same = fidelity_metrics(test, test, classifier, isc=False, kid_subset_size=100, prc=True)
    floor = fidelity_metrics(train, test, classifier, isc=False, kid_subset_size=100)
    far = fidelity_metrics(noise, test, classifier, isc=False, kid_subset_size=100)
    for name, out in (("test_test", same), ("train_test", floor), ("noise_test", far)):
        MEASURED[f"classifier_fid_{name}"] = out["classifier_fid"]
        MEASURED[f"classifier_kid_{name}"] = out["classifier_kid_mean"]
    assert "fid" not in same and "kid_mean" not in same
    assert abs(same["classifier_fid"]) < 1e-6
    assert same["classifier_precision"] == 1.0 and same["classifier_recall"] == 1.0
    assert 0.0 < floor["classifier_fid"] < 0.01 * far["classifier_fid"]
    assert far["classifier_fid"] > 100.0
    # KID is unbiased: ~0 (within its spread) for equal distributions, large for noise.
    assert abs(same["classifier_kid_mean"]) < 3 * same["classifier_kid_std"] + 1e-9
    assert far["classifier_kid_mean"] > 100 * max(abs(floor["classifier_kid_mean"]), floor["classifier_kid_std"])


def test_kid_subset_shrinks_to_small_sets(classifier: Extractor, digits) -> None:
    out = fidelity_metrics(digits["train"][:20], digits["test"][:30], classifier, kid_subset_size=1000)
    assert out["classifier_kid_subset_size"] == 20.0 and math.isfinite(out["classifier_kid_mean"])


# --------------------------------------------------------------------------- Inception path


class StandInInception(FeatureExtractorBase):
    """A tiny extractor in Inception's place: fixed random projections of the pixels.

    Records the inputs it receives and how its weights arrived.
    """

    seen: list[tuple[torch.dtype, tuple[int, ...]]] = []
    weights_args: list[Any] = []

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path=None, **kwargs) -> None:
        super().__init__(name, features_list)
        StandInInception.weights_args.append(feature_extractor_weights_path)
        state = torch.load(feature_extractor_weights_path, weights_only=False)  # as torch-fidelity does
        self.register_buffer("proj", state["proj"])
        self.register_buffer("head", state["head"])

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("2048", "logits_unbiased")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits_unbiased" if metric == "isc" else "2048"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        StandInInception.seen.append((x.dtype, tuple(x.shape[1:])))
        assert x.dtype == torch.uint8 and x.shape[1] == 3, "Inception takes uint8 RGB"
        feats = torch.relu(x.float().flatten(1) / 255.0 @ self.proj)
        out = {"2048": feats, "logits_unbiased": feats @ self.head}
        return tuple(out[name] for name in self.features_list)


STAND_IN = "ncsn-test-stand-in-inception"


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The stand-in registered in Inception's place, with its weights file; returns the file."""
    if STAND_IN not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(STAND_IN, StandInInception)
    monkeypatch.setattr(extractor_mod, "INCEPTION_NAME", STAND_IN)
    StandInInception.seen.clear()
    StandInInception.weights_args.clear()
    gen = torch.Generator().manual_seed(0)
    path = tmp_path / "stand_in.pth"
    torch.save({"proj": torch.randn(3 * 28 * 28, 32, generator=gen), "head": torch.randn(32, 10, generator=gen)}, path)
    return path


def _cfg(**evaluate: Any) -> Config:
    return config_from_dict({"profile": "smoke", "base": {"dataset": "cifar10"}, "evaluate": evaluate})


def test_inception_path_with_stand_in(stand_in: Path, digits, noise) -> None:
    ex = resolve_extractor(_cfg(extractor="auto", weights_path=str(stand_in)), vector_data=False)
    assert ex.kind == "inception" and ex.name == STAND_IN and ex.rgb and ex.prefix == ""
    test = digits["test"][:300]
    same = fidelity_metrics(test, test, ex, kid_subset_size=100)
    floor = fidelity_metrics(digits["train"][:300], test, ex, kid_subset_size=100)
    far = fidelity_metrics(noise[:300], test, ex, kid_subset_size=100)
    assert {"is", "fid", "kid_mean"} <= set(same) and not any(k.startswith("classifier_") for k in same)
    assert abs(same["fid"]) < 1e-6 and 0 < floor["fid"] < far["fid"]
    # Grayscale was repeated to RGB, pixels stayed uint8; weights came as an in-memory copy.
    assert StandInInception.seen and all(s == (torch.uint8, (3, 28, 28)) for s in StandInInception.seen)
    assert all(isinstance(a, io.BytesIO) for a in StandInInception.weights_args)
    assert ex.weights_sha256 and len(ex.weights_sha256) == 64


def test_missing_inception_weights_names_path_and_param(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(EvaluationError) as err:
        resolve_extractor(_cfg(extractor="inception"), vector_data=False)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / INCEPTION_FILE
    assert str(expected) in str(err.value) and "evaluate.weights_path" in str(err.value)
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(EvaluationError) as err:
        resolve_extractor(_cfg(extractor="inception", weights_path=str(missing)), vector_data=False)
    assert str(missing) in str(err.value) and "evaluate.weights_path" in str(err.value)


CALLED: list[str] = []


def _mark() -> None:
    CALLED.append("code ran")


class _Payload:
    def __reduce__(self):
        return (_mark, ())


def test_unsafe_inception_weights_are_refused_not_run(tmp_path: Path) -> None:
    path = tmp_path / INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(2), "evil": _Payload()}, path)
    with pytest.raises(EvaluationError, match="refused"):
        resolve_extractor(_cfg(extractor="inception", weights_path=str(path)), vector_data=False)
    assert CALLED == []


def test_real_inception_class_accepts_verified_weights(tmp_path: Path) -> None:
    """torch-fidelity's own InceptionV3 (random weights) runs from our in-memory copy."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    path = tmp_path / "random_inception.pth"
    torch.save(Skeleton("skeleton", ["2048"], feature_extractor_weights_path=empty).state_dict(), path)
    ex = resolve_extractor(_cfg(extractor="inception", weights_path=str(path)), vector_data=False)
    assert ex.name == "inception-v3-compat"
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cache = tmp_path / "cache"  # the second input is the same tensor: its features come from the cache
    out = fidelity_metrics(images, images, ex, kid=False, cache_dir=cache)
    assert any(cache.iterdir())
    assert set(out) == {"is", "is_std", "is_splits", "fid"} and math.isfinite(out["fid"])


def test_extractor_choice_by_dataset(classifier: Extractor, tmp_path: Path) -> None:
    digits_cfg = config_from_dict({"profile": "smoke"})
    chosen = resolve_extractor(digits_cfg, vector_data=False, classifier_path=classifier.weights_path)
    assert chosen.kind == "classifier" and chosen.prefix == "classifier_"
    assert resolve_extractor(config_from_dict({"profile": "smoke", "base": {"dataset": "gmm"}}),
                             vector_data=True).kind == "raw"
    with pytest.raises(EvaluationError, match="dvc repro classifier"):
        resolve_extractor(digits_cfg, vector_data=False, classifier_path=tmp_path / "absent.pt")


# --------------------------------------------------------------------------- selection, memorisation


def test_best_snapshot_is_lowest_finite_fid() -> None:
    scores = [SnapshotScore(100, 50.0, 1.0, ()), SnapshotScore(200, 20.0, 0.9, ()),
              SnapshotScore(300, math.nan, 0.8, ()), SnapshotScore(400, 20.0, 0.8, ())]
    assert best_snapshot(scores).step == 400
    assert best_snapshot(scores[:2]).step == 200


def test_nearest_neighbours_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 256, (300, 1, 6, 6), dtype=torch.uint8, generator=gen)
    queries = torch.cat([ref[:5], torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8, generator=gen)])
    dist, idx = nearest_neighbours(queries, ref, 3, query_batch=7, reference_batch=64)
    brute = torch.cdist(queries.flatten(1).double() / 255, ref.flatten(1).double() / 255)
    expected_d, expected_i = brute.topk(3, dim=1, largest=False)
    assert torch.equal(idx, expected_i) and torch.allclose(dist.double(), expected_d, atol=1e-5)
    assert torch.equal(dist[:5, 0], torch.zeros(5)) and torch.equal(idx[:5, 0], torch.arange(5))


def test_memorisation_statistics_detect_copies(digits) -> None:
    train, test = digits["train"], digits["test"][:300]
    d_test, _ = nearest_neighbours(test, train)
    d_copy, _ = nearest_neighbours(train[:300], train)
    d_fresh, _ = nearest_neighbours(digits["test"][300:600], train)
    copied = distance_stats(d_copy[:, 0], d_test[:, 0], "pixel")
    fresh = distance_stats(d_fresh[:, 0], d_test[:, 0], "pixel")
    MEASURED.update({"nn_ratio_copies": copied["nn_pixel_ratio"], "nn_ratio_fresh": fresh["nn_pixel_ratio"]})
    assert copied["nn_pixel_median_samples"] == 0.0 and copied["nn_pixel_frac_below_test_p05"] == 1.0
    assert 0.8 < fresh["nn_pixel_ratio"] < 1.25 and fresh["nn_pixel_frac_below_test_p05"] < 0.15


# --------------------------------------------------------------------------- stages end to end


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


def test_classifier_and_evaluate_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in: Path) -> None:
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
    assert {"is", "fid", "kid_mean", "floor_fid_train_vs_test"} <= set(metrics)
    assert not any(k.startswith("classifier_") for k in metrics)


# --------------------------------------------------------------------------- class balance


def test_share_ratios_known_answer() -> None:
    from ncsn.evaluation.class_balance import share_ratios

    data = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # 4 classes, 1/4 each
    samples = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])  # class 0 doubled, class 3 missing
    out = share_ratios(samples, data, 4)
    assert [out[f"class_share_{k}"] for k in range(4)] == [0.5, 0.25, 0.25, 0.0]
    assert [out[f"class_share_ratio_{k}"] for k in range(4)] == [2.0, 1.0, 1.0, 0.0]
    assert (out["class_share_ratio_min"], out["class_share_ratio_max"]) == (0.0, 2.0)
    assert "class_share_ratio_1" not in share_ratios(samples, torch.tensor([0, 2, 3]), 4)  # absent from the data


def test_class_balance_of_real_digits_and_of_one_digit(classifier: Extractor, digits) -> None:
    from ncsn.evaluation.class_balance import class_balance_metrics

    real = class_balance_metrics(digits["test"], digits["train_labels"], classifier.weights_path, device=torch.device("cpu"))
    ones = digits["test"][digits["test_labels"] == 1]
    only_ones = class_balance_metrics(ones, digits["train_labels"], classifier.weights_path, device=torch.device("cpu"))
    MEASURED.update({"class_ratio_min_test": real["class_share_ratio_min"],
                     "class_ratio_max_test": real["class_share_ratio_max"]})
    assert 0.7 < real["class_share_ratio_min"] <= 1.0 <= real["class_share_ratio_max"] < 1.3
    assert only_ones["class_share_1"] > 0.95 and only_ones["class_share_ratio_min"] < 0.05
    assert class_balance_metrics(digits["test"], None, classifier.weights_path, device=torch.device("cpu")) == {}
