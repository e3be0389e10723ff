"""The self-supervised encoder of data without labels: NT-Xent, its views, training, and how
``evaluate.extractor`` picks it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ncsn.config import config_from_dict
from ncsn.data.shapes import shape_image
from ncsn.evaluation import EvaluationError
from ncsn.evaluation.classifier import objective_of, predict, save_classifier
from ncsn.evaluation.extractor import ExtractorUnavailable, resolve_extractor
from ncsn.evaluation.ssl_encoder import TEMPERATURE, nt_xent, random_view, train_ssl_encoder
from ncsn.evaluation.bootstrap import fid_of_features as frechet

SMALL = dataclasses.replace(config_from_dict({"profile": "smoke"}).classifier, n_iters=40, batch_size=32)


def _shapes(n: int, seed: int) -> torch.Tensor:
    """``n`` coloured-shape images, uint8 [n, 3, 32, 32]."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([shape_image(rng) for _ in range(n)])).permute(0, 3, 1, 2).contiguous()


def test_nt_xent_known_answer() -> None:
    # Two images whose views agree exactly and are orthogonal to the other image's: each of the 4
    # views sees its partner at cosine 1 and two others at 0, so the loss is log(1 + 2 e^(-1/τ)).
    z = torch.eye(2)
    assert float(nt_xent(z, z)) == pytest.approx(math.log(1 + 2 * math.exp(-1 / TEMPERATURE)), rel=1e-6)
    swapped = nt_xent(z, z.flip(0))  # each partner is the other image: worse than agreeing views
    assert float(swapped) > float(nt_xent(z, z)) + 1.0


def test_views_are_seeded_in_range_and_keep_a_flat_image_flat() -> None:
    x = _shapes(8, seed=0).float() / 255
    a, b = (random_view(x, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert not torch.equal(a, random_view(x, torch.Generator().manual_seed(4)))
    flat = random_view(torch.full((4, 3, 32, 32), 0.5), torch.Generator().manual_seed(0))
    assert float((flat - flat.mean(dim=(1, 2, 3), keepdim=True)).abs().max()) < 1e-5  # crops and jitter only


def test_encoder_is_seeded_and_its_fid_sees_noise(tmp_path: Path) -> None:
    train = _shapes(256, seed=1)
    first = train_ssl_encoder(train, SMALL, seed=0, progress=False)
    again = train_ssl_encoder(train, SMALL, seed=0, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(first.state_dict().values(), again.state_dict().values()))

    real, other = _shapes(200, seed=2), _shapes(200, seed=3)
    noisy = (other.float() + 60 * torch.randn(other.shape, generator=torch.Generator().manual_seed(0)))
    noisy = noisy.clamp(0, 255).to(torch.uint8)
    features = {name: predict(first, x)[1].double() for name, x in (("real", real), ("other", other),
                                                                      ("noisy", noisy))}
    assert frechet(features["noisy"], features["real"]) > 2 * frechet(features["other"], features["real"])


def test_auto_picks_the_encoder_without_inception_weights(tmp_path: Path) -> None:
    path = tmp_path / "classifier.pt"
    save_classifier(train_ssl_encoder(_shapes(64, seed=0), dataclasses.replace(SMALL, n_iters=2), progress=False),
                    path, dataset="folder", step=2, test_accuracy=float("nan"))
    assert objective_of(path) == "simclr"
    missing = str(tmp_path / "absent.pth")

    def cfg_with(extractor: str):
        return config_from_dict({"profile": "smoke", "base": {"dataset": "folder"}, "data": {"folder": str(tmp_path)},
                                 "evaluate": {"extractor": extractor, "weights_path": missing}})

    cfg = cfg_with("auto")
    extractor = resolve_extractor(cfg, vector_data=False, classifier_path=path)
    assert (extractor.kind, extractor.prefix, extractor.has_is) == ("ssl", "ssl_", False)
    assert "same data only" in extractor.note

    with pytest.raises(EvaluationError, match="holds a self-supervised encoder .*set evaluate.extractor: ssl"):
        resolve_extractor(cfg_with("classifier"), vector_data=False, classifier_path=path)
    with pytest.raises(ExtractorUnavailable, match="Inception weights missing"):
        resolve_extractor(cfg_with("inception"), vector_data=False, classifier_path=path)
