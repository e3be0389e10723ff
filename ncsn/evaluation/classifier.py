"""A small image classifier: the offline feature extractor for MNIST-like datasets.

Inception-v3 features need weights that cannot be downloaded offline, and Inception
was never trained on 28×28 grayscale digits or clothes. For MNIST-like data (mnist5k,
mnist, fashion_mnist: 10 classes each) we train this CNN on the dataset's
own labels and use its logits (for a classifier-IS) and its penultimate layer (for a
classifier-FID / -KID). Those numbers are not comparable to Inception numbers.

Architecture (any C x H x W with H, W >= 8)::

    [conv3x3 -> BN -> ReLU -> maxpool2] x 2 -> conv3x3 -> BN -> ReLU -> avgpool to 3x3
    -> flatten -> linear -> ReLU   = "features" [B, feature_dim]
    -> linear                      = "logits"   [B, num_classes]

The file ``classifier.pt`` is a plain dict (loads with ``weights_only=True``)::

    format         "ncsn-classifier/1"
    trained        bool; False when no network could be trained (then nothing else but "reason")
    objective      "labels" (a classifier) or "simclr" (a self-supervised encoder, for data
                   without labels; its "logits" are projections and its test_accuracy is NaN)
    config         {"channels", "image_size", "num_classes", "width", "feature_dim"}
    state_dict     the network's weights
    dataset        the dataset it was trained on
    step           optimisation steps done
    test_accuracy  accuracy on the held-out split
"""

from __future__ import annotations

import math
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ncsn.storage.checkpoint import atomic_save
from ncsn.config import ClassifierConfig
from ncsn.evaluation import EvaluationError
from ncsn.data.progress import progress as progress_bar

FORMAT = "ncsn-classifier/1"
# What the network was trained for: the dataset's labels (cross-entropy), or none (the SimCLR
# encoder of ncsn.evaluation.ssl_encoder, whose head is a projection, not class logits).
Objective = Literal["labels", "simclr"]


@dataclass(frozen=True)
class ClassifierSpec:
    """Shape of a classifier: enough to rebuild it from a state dict."""

    channels: int
    image_size: int
    num_classes: int
    width: int = 16
    feature_dim: int = 128


class ImageClassifier(nn.Module):
    """uint8 or [0, 1] images [B, C, H, W] -> logits [B, num_classes] (see module docstring)."""

    def __init__(self, spec: ClassifierSpec, objective: Objective = "labels") -> None:
        super().__init__()
        self.spec = spec
        self.objective = objective  # saved in classifier.pt; "simclr": ``head`` gives projections, not logits
        w = spec.width

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.trunk = nn.Sequential(
            *block(spec.channels, w), nn.MaxPool2d(2),
            *block(w, 2 * w), nn.MaxPool2d(2),
            *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(4 * w * 9, spec.feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(spec.feature_dim, spec.num_classes)

    @staticmethod
    def scale(x: Tensor) -> Tensor:
        """uint8 pixels -> floats in [0, 1]; float input is taken as already scaled."""
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations [B, feature_dim] (the classifier-FID/KID feature space)."""
        return self.trunk(self.scale(x))

    def forward_both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits [B, num_classes], features [B, feature_dim]) in one pass."""
        feats = self.features(x)
        return self.head(self.dropout(feats)), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_both(x)[0]


def cosine_adam(model: nn.Module, cfg: ClassifierConfig) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """Adam at ``cfg.lr`` with a cosine decay to 5 % of it over ``cfg.n_iters`` steps: converges in
    few steps without tuning (the classifier and the self-supervised encoder)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / cfg.n_iters, 1.0))))
    return optimizer, schedule


def _random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero fill): cheap augmentation."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (b,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # [B, W]
    index = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@torch.no_grad()
def predict(model: ImageClassifier, images: Tensor, *, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Logits and features of ``images`` ([N, C, H, W] uint8), in eval mode.

    :return: (logits [N, num_classes], features [N, feature_dim]) on the CPU.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        lo, fe = model.forward_both(images[start:start + batch_size].to(device))
        logits.append(lo.cpu())
        feats.append(fe.cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(feats)


def accuracy(model: ImageClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` whose arg-max logit equals ``labels``."""
    logits, _ = predict(model, images)
    return float((logits.argmax(1) == labels.cpu()).float().mean())


def train_classifier(images: Tensor, labels: Tensor, cfg: ClassifierConfig, *, seed: int = 0,
                     device: torch.device | str = "cpu", max_shift: int = 2, width: int = 16,
                     progress: bool = True) -> ImageClassifier:
    """Adam on cross-entropy for ``cfg.n_iters`` steps of ``cfg.batch_size`` random examples.

    :param images: uint8 [N, C, H, W] training images.
    :param labels: int64 [N] class indices 0 .. K-1.
    :param seed: seeds initialisation, batches and augmentation (same seed, same weights on CPU).
    :param max_shift: random translation in pixels (augmentation).
    :return: the trained network, in eval mode, on ``device``.
    """
    assert images.ndim == 4 and images.dtype == torch.uint8, \
        f"expected uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
    assert labels.shape == (len(images),), f"labels must be [{len(images)}], got {tuple(labels.shape)}"
    num_classes = int(labels.max()) + 1
    spec = ClassifierSpec(channels=images.shape[1], image_size=images.shape[-1], num_classes=num_classes, width=width)
    torch.manual_seed(seed)
    # channels_last: about a third faster on CPU for these small convolutions.
    model = ImageClassifier(spec).to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)

    def batch_loss() -> Tensor:
        idx = torch.randint(0, len(images), (cfg.batch_size,), generator=gen)
        x = _random_shift(images[idx].float() / 255.0, max_shift, gen)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(model(x), labels[idx].to(device))

    return fit(model, cfg, batch_loss, desc="classifier", progress=progress)


def fit(model: ImageClassifier, cfg: ClassifierConfig, batch_loss: Callable[[], Tensor], *, desc: str,
        progress: bool = True) -> ImageClassifier:
    """``cfg.n_iters`` steps of :func:`cosine_adam` on ``batch_loss()`` (one fresh batch per call).

    :return: ``model``, in eval mode.
    """
    optimizer, schedule = cosine_adam(model, cfg)
    model.train()
    bar = progress_bar(range(cfg.n_iters), desc=desc, disable=not progress)
    for _ in bar:
        loss = batch_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def save_classifier(model: ImageClassifier, path: str | Path, *, dataset: str, step: int,
                    test_accuracy: float) -> None:
    """Write ``model`` atomically as a self-describing plain dict (see module docstring)."""
    atomic_save({
        "format": FORMAT,
        "trained": True,
        "objective": model.objective,
        "config": asdict(model.spec),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "dataset": dataset,
        "step": step,
        "test_accuracy": test_accuracy,
    }, path)


def save_untrained_marker(path: str | Path, *, dataset: str, reason: str) -> None:
    """Write a ``classifier.pt`` that says no classifier exists for this dataset, and why."""
    atomic_save({"format": FORMAT, "trained": False, "dataset": dataset, "reason": reason}, path)


def read_classifier_file(path: str | Path) -> dict[str, Any]:
    """Load ``classifier.pt`` safely (``weights_only=True``) and check its format.

    :raises EvaluationError: missing, unreadable, unsafe or not a classifier file.
    """
    path = Path(path)
    rerun = "run the classifier stage first: dvc repro classifier (or: ncsn classifier)"
    if not path.is_file():
        raise EvaluationError(f"classifier {path} not found; {rerun}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise EvaluationError(f"classifier {path} was refused: it holds objects other than tensors and plain data"
                              f" (weights_only load failed); delete it and {rerun}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise EvaluationError(f"classifier {path} is truncated or corrupt ({type(err).__name__});"
                              f" delete it and {rerun}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise EvaluationError(f"{path} is not an ncsn classifier file (expected format {FORMAT!r}); {rerun}")
    return payload


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> ImageClassifier:
    """Rebuild the trained classifier of ``path`` in eval mode.

    :raises EvaluationError: for a missing/unsafe file or one written for a dataset without labels.
    """
    payload = read_classifier_file(path)
    if not payload["trained"]:
        raise EvaluationError(f"{path} holds no classifier: {payload.get('reason', 'not trained')};"
                              " set evaluate.extractor: inception")
    model = ImageClassifier(ClassifierSpec(**payload["config"]), objective=payload.get("objective", "labels"))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def objective_of(path: str | Path) -> Objective:
    """What the network of ``path`` was trained for (files without the field hold classifiers)."""
    return read_classifier_file(path).get("objective", "labels")


def timed_train(images: Tensor, labels: Tensor, cfg: ClassifierConfig, **kwargs: Any) -> tuple[ImageClassifier, float]:
    """:func:`train_classifier` and its wall time in seconds."""
    start = time.perf_counter()
    model = train_classifier(images, labels, cfg, **kwargs)
    return model, time.perf_counter() - start
