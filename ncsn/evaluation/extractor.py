"""Which network measures the samples, and how torch-fidelity gets its weights.

Four feature extractors, chosen by ``evaluate.extractor`` (``auto``: the classifier for the
labelled 28×28 datasets; for other images Inception-v3 when its weights are present, else the
self-supervised encoder; raw coordinates for vector data):

* ``inception-v3-compat``: torch-fidelity's port of the TensorFlow Inception-v3 used by
  the paper's IS/FID. Metric keys ``is``, ``fid``, ``kid_mean``, ... Needs the weights file
  ``weights-inception-2015-12-05-6726825d.pth`` (offline: no download is attempted).
* ``ncsn-digit-classifier``: :class:`ClassifierExtractor`, the CNN of the classifier stage
  (trained on the dataset's own labels: digits, or Fashion-MNIST's clothes). Keys ``classifier_is``, ``classifier_fid``, ...: not comparable to Inception numbers.
* ``ncsn-ssl-encoder``: :class:`SSLExtractor`, the same CNN trained by the classifier stage with
  SimCLR's objective on a dataset without labels (``ncsn.evaluation.ssl_encoder``). Keys
  ``ssl_fid``, ``ssl_kid_mean``, ... (no IS): they compare runs on the same data only.
* ``ncsn-raw-vector``: :class:`RawVectorExtractor`, the identity on vector data (the 2-D
  toy mixture). Keys ``raw_fid``, ``raw_kid_mean``: Fréchet / kernel distances of the points.

Safety of the Inception weights: torch-fidelity reads the file with
``torch.load(..., weights_only=False)``, which would run any code pickled into it. We
never give it the path: :func:`load_inception_weights` reads the file with
``weights_only=True`` (tensors and plain containers only, anything else is refused),
re-serialises that plain state dict into memory, and torch-fidelity loads the in-memory
copy. A tampered file is therefore refused instead of executed; the file still has to be
the right one for the numbers to mean anything (its SHA-256 is checked against the
prefix in its name, and recorded in the metrics).
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ncsn.config import Config
from ncsn.evaluation import EvaluationError
from ncsn.evaluation.classifier import load_classifier, objective_of

log = logging.getLogger(__name__)

CLASSIFIER_DATASETS = ("mnist5k", "mnist", "fashion_mnist")  # labelled 28×28 grayscale images, 10 classes
CLASSIFIER_NAME = "ncsn-digit-classifier"
SSL_NAME = "ncsn-ssl-encoder"
RAW_NAME = "ncsn-raw-vector"
INCEPTION_NAME = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
INCEPTION_SHA256_PREFIX = "6726825d"


class _EagerExtractor(FeatureExtractorBase):
    """torch-fidelity's extractor interface for small networks that are run as they are, never compiled."""

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        raise NotImplementedError


class ClassifierExtractor(_EagerExtractor):
    """torch-fidelity wrapper of the classifier stage's CNN.

    Features: ``logits`` [B, K] (classifier-IS) and ``features`` [B, 128], the penultimate
    layer (classifier-FID/KID/precision/recall). ``feature_extractor_weights_path`` is the
    ``classifier.pt`` file, read with ``weights_only=True``.
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise EvaluationError(f"{name} needs feature_extractor_weights_path = the classifier.pt file")
        self.net = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("logits", "features")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        assert x.dtype == torch.uint8 and x.ndim == 4, f"expected uint8 [B, C, H, W], got {x.dtype} {tuple(x.shape)}"
        logits, feats = self.net.forward_both(x)
        out = {"logits": logits, "features": feats}
        return tuple(out[name].float() for name in self.features_list)


class SSLExtractor(ClassifierExtractor):
    """torch-fidelity wrapper of the self-supervised encoder: ``features`` [B, 128] only (no classes, no IS)."""

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "features"


class RawVectorExtractor(_EagerExtractor):
    """The identity on float vectors [B, D]: distances between point clouds (no IS)."""

    def __init__(self, name: str, features_list: list[str], **kwargs) -> None:
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("points",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "points"

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        assert x.ndim == 2, f"expected vectors [B, D], got {tuple(x.shape)}"
        return (x.double(),)


def ensure_registered() -> None:
    """Register this module's extractors with torch-fidelity (once per process)."""
    for name, cls in ((CLASSIFIER_NAME, ClassifierExtractor), (SSL_NAME, SSLExtractor), (RAW_NAME, RawVectorExtractor)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, cls)


@dataclass(frozen=True)
class Extractor:
    """A feature extractor as the metrics code uses it.

    :param name: torch-fidelity registry name, written next to every number.
    :param prefix: metric key prefix ("" Inception, "classifier_", "raw_").
    :param rgb: grayscale images are repeated to 3 channels before extraction.
    :param has_is: whether an Inception Score makes sense (class logits exist).
    :param weights_path: the weights file (for the record and for torch-fidelity).
    :param weights_bytes: verified plain state dict, handed over instead of the path.
    :param weights_sha256: hash of the weights file, recorded in the metrics.
    """

    kind: Literal["inception", "classifier", "ssl", "raw"]
    name: str
    prefix: str
    rgb: bool
    has_is: bool
    weights_path: Path | None = None
    weights_bytes: bytes | None = None
    weights_sha256: str | None = None

    def weights_argument(self) -> str | io.BytesIO | None:
        """``feature_extractor_weights_path`` for one torch-fidelity call (a fresh buffer each time)."""
        if self.weights_bytes is not None:
            return io.BytesIO(self.weights_bytes)
        return None if self.weights_path is None else str(self.weights_path)

    @property
    def note(self) -> str:
        """What the numbers are, for metrics.json."""
        if self.kind == "classifier":
            return ("classifier_* metrics use a classifier trained on this dataset's labels (ncsn classifier stage) as"
                    " feature extractor: not comparable to Inception IS/FID/KID")
        if self.kind == "ssl":
            return ("ssl_* metrics use a self-supervised encoder (SimCLR) trained on this dataset's own training"
                    " images (ncsn classifier stage): they compare runs on the same data only; bits_per_dim"
                    " compares models across datasets")
        if self.kind == "raw":
            return "raw_* metrics compare the points themselves (no feature network)"
        return ("Inception-v3 (torch-fidelity inception-v3-compat, TF 2015-12-05 weights):"
                " comparable to published IS/FID")


def default_inception_path() -> Path:
    """Where torch hub keeps the file: ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _missing_weights_message(path: Path, *, configured: bool) -> str:
    where = f"evaluate.weights_path = {path} does not exist" if configured else f"{path} not found"
    return (f"Inception weights missing: {where}. FID/IS need {INCEPTION_FILE} (download it on a machine with"
            f" internet from {INCEPTION_URL}) placed at {default_inception_path()}, or set evaluate.weights_path"
            " in params.yaml to the file's location. It is read with weights_only=True; use a file you trust."
            f" Offline, evaluate.extractor: classifier works for {', '.join(CLASSIFIER_DATASETS)}, and ssl (or auto)"
            " for data without labels.")


class ExtractorUnavailable(EvaluationError):
    """The chosen feature extractor cannot be had here (weights absent, no network trained).

    The evaluate stage then writes the metrics that need no extractor, without FID, and says why.
    """


def inception_path(weights_path: str | None) -> Path:
    """``evaluate.weights_path`` when set, else the torch hub cache file (which may be absent)."""
    return Path(weights_path).expanduser() if weights_path else default_inception_path()


def resolve_inception_path(weights_path: str | None) -> Path:
    """``evaluate.weights_path`` when set, else the torch hub cache file.

    :raises ExtractorUnavailable: when the file is absent; the message names both places and the param.
    """
    path = inception_path(weights_path)
    if not path.is_file():
        raise ExtractorUnavailable(_missing_weights_message(path, configured=bool(weights_path)))
    return path


def load_inception_weights(path: Path) -> tuple[bytes, str]:
    """Read a weights file safely and return (a plain re-serialised state dict, its file's SHA-256).

    :raises EvaluationError: when the file is unreadable, or holds anything but a
        ``{name: tensor}`` mapping (``weights_only=True`` refuses pickled code).
    """
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or ["unsafe content"])[0][:200]
        raise EvaluationError(f"Inception weights {path} were refused: the file holds objects other than tensors"
                              f" (weights_only load failed: {first}). Replace it with {INCEPTION_FILE} from"
                              f" {INCEPTION_URL}.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise EvaluationError(f"Inception weights {path} are truncated or corrupt ({type(err).__name__});"
                              f" download {INCEPTION_FILE} again from {INCEPTION_URL}.") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise EvaluationError(f"Inception weights {path} are not a state dict of tensors;"
                              f" expected {INCEPTION_FILE} from {INCEPTION_URL}.")
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        log.warning("%s: SHA-256 %s does not match %s: FID will not be comparable to published numbers",
                    path, digest[:16], INCEPTION_FILE)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue(), digest


def resolve_extractor(cfg: Config, *, vector_data: bool, classifier_path: str | Path | None = None) -> Extractor:
    """The extractor named by ``evaluate.extractor`` (``auto`` decides by dataset).

    :param vector_data: the samples are vectors [N, D] (the toy mixture), not images.
    :param classifier_path: the classifier stage's ``classifier.pt``.
    :raises ExtractorUnavailable: missing Inception weights, classifier or encoder.
    :raises EvaluationError: refused weights, or a choice that does not fit the data.
    """
    choice = cfg.evaluate.extractor
    if vector_data:
        if choice not in ("auto",):
            raise EvaluationError(f"evaluate.extractor = {choice!r} needs images; dataset {cfg.base.dataset!r} holds"
                                  " vectors: set evaluate.extractor: auto")
        return Extractor("raw", RAW_NAME, "raw_", rgb=False, has_is=False)
    if choice == "auto":
        choice = "classifier" if cfg.base.dataset in CLASSIFIER_DATASETS else "inception"
        if choice == "inception" and not inception_path(cfg.evaluate.weights_path).is_file() \
                and _objective(classifier_path) == "simclr":
            choice = "ssl"
    if choice in ("classifier", "ssl"):
        return _own_network(choice, classifier_path)
    path = resolve_inception_path(cfg.evaluate.weights_path)
    weights, digest = load_inception_weights(path)
    return Extractor("inception", INCEPTION_NAME, "", rgb=True, has_is=True, weights_path=path,
                     weights_bytes=weights, weights_sha256=digest)


def _objective(classifier_path: str | Path | None) -> str | None:
    """The objective of the classifier stage's network, or None where there is none to read."""
    try:
        return objective_of(classifier_path) if classifier_path is not None else None
    except EvaluationError:
        return None


def _own_network(choice: str, classifier_path: str | Path | None) -> Extractor:
    """The classifier stage's network as the extractor ``choice`` ("classifier" or "ssl")."""
    wanted = {"classifier": "labels", "ssl": "simclr"}[choice]
    if classifier_path is None or not Path(classifier_path).is_file():
        raise ExtractorUnavailable(f"evaluate.extractor: {choice} needs the classifier stage's classifier.pt"
                                   f" ({classifier_path} not found): run dvc repro classifier")
    try:
        objective = load_classifier(classifier_path).objective  # fail early: unsafe or untrained
    except EvaluationError as err:
        raise ExtractorUnavailable(str(err)) from None
    if objective != wanted:
        other = {"labels": "classifier", "simclr": "ssl"}[objective]
        what = {"labels": "a classifier trained on the labels", "simclr": "a self-supervised encoder (no labels)"}
        raise EvaluationError(f"evaluate.extractor = {choice!r}, but {classifier_path} holds {what[objective]};"
                              f" set evaluate.extractor: {other} (or auto)")
    if choice == "ssl":
        return Extractor("ssl", SSL_NAME, "ssl_", rgb=False, has_is=False, weights_path=Path(classifier_path))
    return Extractor("classifier", CLASSIFIER_NAME, "classifier_", rgb=False, has_is=True,
                     weights_path=Path(classifier_path))
