"""What the evaluation tests share: the measured figures, a recording tracker, one torch thread,
and a stand-in for Inception (fixed random projections, so that the Inception path runs offline)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import torch
from torch_fidelity import FeatureExtractorBase

MEASURED: dict[str, Any] = {}  # printed at the end of the session (pytest -s) for the record


def report_measured() -> None:
    if MEASURED:
        print("\nmeasured:", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in MEASURED.items()}))

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
