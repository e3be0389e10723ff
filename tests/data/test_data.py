"""The data layer: datasets, splits, stored files, stats and transforms."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from ncsn.config import Config, config_from_dict
from ncsn.data import DataError, load_split, prepare, read_stats
from ncsn.data.folder import SkippedImagesWarning, load_folder
from ncsn.data.mnist5k import load_mnist5k
from ncsn.data.split import folder_test_size, split_indices
from ncsn.data.transforms import from_model_input, resolve_flip, to_model_input
from tests.data_fixtures import banded_rgb, write_cifar10, write_image, write_mnist


def _flip(cfg: Config) -> bool:
    return resolve_flip(cfg.data.flip, cfg.base.dataset)


def _cfg(dataset: str = "mnist5k", **data) -> Config:
    return config_from_dict({"base": {"dataset": dataset, "device": "cpu"}, "data": data})


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- mnist5k
@pytest.fixture(scope="module")
def mnist5k_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mnist5k")
    return out, prepare(_cfg(), out)


def test_mnist5k_file_is_5000_digits() -> None:
    images, labels = load_mnist5k()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.bincount().tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0
    assert (images[:, :, 0, :] == 0).all()  # MNIST digits never touch the top row


def test_mnist5k_prepared_split(mnist5k_out: tuple[Path, dict]) -> None:
    out, stats = mnist5k_out
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train.data.shape == (4000, 1, 28, 28) and test.data.shape == (1000, 1, 28, 28)
    assert train.data.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert set(train.labels.unique().tolist()) == set(range(10)) == set(test.labels.unique().tolist())
    # the recorded split reproduces the stored test set from the source file
    images, labels = load_mnist5k()
    idx = torch.tensor(stats["split"]["test_indices"])
    assert stats["split"]["seed"] == 0 and len(idx) == 1000
    assert torch.equal(test.data, images[idx]) and torch.equal(test.labels, labels[idx])
    assert (stats["n_train"], stats["n_test"], stats["shape"]) == (4000, 1000, [1, 28, 28])
    assert read_stats(out) == stats


def test_split_is_deterministic_and_disjoint() -> None:
    train, test = split_indices(5000, 1000, seed=0)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(5000))
    again = split_indices(5000, 1000, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert not torch.equal(test, split_indices(5000, 1000, seed=1)[1])
    with pytest.raises(DataError, match="n_test"):
        split_indices(10, 10, seed=0)


# ----------------------------------------------------------------------------- torchvision formats
def test_mnist_idx_files_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    arrays = write_mnist(tmp_path / "raw")
    constructed = []
    real_init = torchvision.datasets.MNIST.__init__
    monkeypatch.setattr(torchvision.datasets.MNIST, "__init__",
                        lambda self, *a, **k: constructed.append(k["train"]) or real_init(self, *a, **k))
    stats = prepare(_cfg("mnist", root=str(tmp_path / "raw")), tmp_path / "out")
    train, test = load_split(tmp_path / "out", "train"), load_split(tmp_path / "out", "test")
    assert constructed == [True, False]
    assert torch.equal(train.data[:, 0], torch.from_numpy(arrays["train_images"]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k_labels"]).long())
    assert (stats["n_train"], stats["n_test"], stats["split"]) == (12, 6, {"kind": "official"})


def test_cifar10_batches_fixture(tmp_path: Path) -> None:
    arrays = write_cifar10(tmp_path / "raw")
    cfg = _cfg("cifar10", root=str(tmp_path / "raw"))
    stats = prepare(cfg, tmp_path / "out")
    train, test = load_split(tmp_path / "out", "train"), load_split(tmp_path / "out", "test")
    assert train.data.shape == (15, 3, 32, 32) and test.data.shape == (4, 3, 32, 32)
    assert torch.equal(train.data, torch.from_numpy(arrays["train_images"]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["test_labels"]))
    assert stats["shape"] == [3, 32, 32] and resolve_flip(cfg.data.flip, cfg.base.dataset)


def test_cifar10_batch_with_foreign_code_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": Path("x"), "labels": []}, protocol=2))  # a non-numpy global
    with pytest.raises(DataError, match="data_batch_2.*not allowed"):
        prepare(_cfg("cifar10", root=str(tmp_path)), tmp_path / "out")


@pytest.mark.parametrize("dataset, folder", [("mnist", "MNIST/raw"), ("cifar10", "cifar-10-batches-py"),
                                             ("celeba", "celeba")])
def test_missing_files_error_names_folder_and_download_switch(tmp_path: Path, dataset: str, folder: str) -> None:
    with pytest.raises(DataError) as info:
        prepare(_cfg(dataset, root=str(tmp_path / "raw")), tmp_path / "out")
    message = str(info.value)
    assert str(tmp_path / "raw" / folder) in message
    assert "dvc exp run -S data.download=true" in message and "data.download: true" in message
    assert not (tmp_path / "out").exists()


def test_failed_download_is_one_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(self) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError, match=r"downloading MNIST into .*MNIST/raw failed \(<urlopen error no network"):
        prepare(_cfg("mnist", root=str(tmp_path), download=True), tmp_path / "out")


# ----------------------------------------------------------------------------- folder
@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_image(root / "wide.png", banded_rgb(10, 30, (255, 0, 0)))
    write_image(root / "sub" / "tall.jpg", banded_rgb(40, 20, (0, 0, 255)), "JPEG")
    write_image(root / "sub" / "deeper" / "square.BMP", banded_rgb(16, 16, (0, 255, 0)), "BMP")
    (root / "sub" / "notes.txt").write_text("not an image")
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def test_folder_recursive_crop_resize_rgb(image_tree: Path) -> None:
    with pytest.warns(SkippedImagesWarning) as record:
        images, paths = load_folder(image_tree, image_size=8, channels=None)
    assert len(record) == 1 and "broken.png" in str(record[0].message)
    assert [p.name for p in paths] == ["square.BMP", "tall.jpg", "wide.png"]
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8
    # the central square is one colour, so after cropping every pixel has it
    assert (images[0, 1] == 255).all() and (images[0, [0, 2]] == 0).all()
    assert images[1, 2].float().mean() > 240 and images[1, :2].float().mean() < 15  # lossy JPEG
    assert (images[2, 0] == 255).all() and (images[2, 1:] == 0).all()


def test_folder_grayscale(image_tree: Path) -> None:
    with pytest.warns(SkippedImagesWarning):
        images, _ = load_folder(image_tree, image_size=12, channels=1)
    assert images.shape == (3, 1, 12, 12)
    assert (images[2] == 76).all()  # pure red → L = 0.299·255


def test_folder_without_readable_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable images in .*empty"):
        load_folder(tmp_path / "empty", image_size=None, channels=None)
    (tmp_path / "junk" / "a").mkdir(parents=True)
    (tmp_path / "junk" / "a" / "x.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings(), pytest.raises(DataError, match="junk"):
        warnings.simplefilter("ignore")
        prepare(_cfg("folder", folder=str(tmp_path / "junk")), tmp_path / "out")


def test_folder_test_size_rule() -> None:
    assert [folder_test_size(n, 1000) for n in (2, 9, 10, 100, 10_000)] == [1, 1, 2, 20, 1000]
    with pytest.raises(DataError, match="at least 2"):
        folder_test_size(1, 1000)


# ----------------------------------------------------------------------------- gmm
def test_gmm_points() -> None:
    cfg = config_from_dict({"base": {"dataset": "gmm"}, "data": {"gmm_samples": 300, "n_test": 50}})
    from ncsn.data.prepare import load_dataset

    first, second = load_dataset(cfg), load_dataset(cfg)
    assert first.train.data.shape == (300, 2) and first.test.data.shape == (50, 2)
    assert first.train.data.dtype == torch.float32 and first.train.labels is None
    assert torch.equal(first.train.data, second.train.data)
    assert 0.6 < (first.train.data[:, 0] > 0).float().mean() < 0.95  # the 4/5 mode at (5, 5)


# ----------------------------------------------------------------------------- transforms
@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randint(0, 256, (64, 3, 6, 5), generator=_gen(1), dtype=torch.uint8)


def test_plain_input_is_pixels_over_255(pixels: torch.Tensor) -> None:
    x = to_model_input(pixels, dequantize=False, logit_transform=False, flip=False, generator=None)
    assert x.dtype == torch.float32 and torch.equal(x, pixels.float() / 255)
    assert x.min() >= 0 and x.max() <= 1


def test_dequantisation_stays_in_the_pixel_bin(pixels: torch.Tensor) -> None:
    x = to_model_input(pixels, dequantize=True, logit_transform=False, flip=False, generator=_gen())
    assert x.min() >= 0 and x.max() < 1
    assert torch.equal((x * 256).floor().to(torch.uint8), pixels)  # (b + u)/256 with u in [0, 1)
    assert not torch.equal(x, pixels.float() / 255) and x.unique().numel() > 1000
    same = to_model_input(pixels, dequantize=True, logit_transform=False, flip=False, generator=_gen())
    assert torch.equal(x, same)


def test_flip_mirrors_some_examples(pixels: torch.Tensor) -> None:
    x = to_model_input(pixels, dequantize=False, logit_transform=False, flip=True, generator=_gen())
    plain = pixels.float() / 255
    flipped = (x == plain.flip(-1)).flatten(1).all(1)
    kept = (x == plain).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def test_logit_round_trip(pixels: torch.Tensor) -> None:
    x = to_model_input(pixels, dequantize=False, logit_transform=True, flip=False, generator=None)
    assert x.min() < -10 and x.max() > 10  # logit(λ) ≈ −13.8 for black pixels
    back = from_model_input(x, logit_transform=True)
    assert (back - pixels.float() / 255).abs().max() < 2e-7  # a plain sigmoid would be off by up to λ = 1e-6


def test_resolve_flip_follows_the_paper() -> None:
    assert _flip(_cfg("cifar10")) and _flip(_cfg("celeba"))
    assert not _flip(_cfg("mnist5k")) and _flip(_cfg("mnist5k", flip=True))
    assert not _flip(_cfg("cifar10", flip=False))


# ----------------------------------------------------------------------------- prepare stage files
@pytest.fixture
def noise_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(12):
        write_image(tmp_path / "noise" / f"{i:02d}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return tmp_path / "noise"


def test_prepare_stats_match_a_direct_computation(noise_folder: Path, tmp_path: Path) -> None:
    from ncsn.core.sigmas import num_levels_for_dim

    cfg = _cfg("folder", folder=str(noise_folder), image_size=8)
    out = tmp_path / "out"
    stats = prepare(cfg, out)
    assert sorted(p.name for p in out.iterdir()) == ["stats.json", "test.pt", "train.pt"]  # no temp files
    assert json.loads((out / "stats.json").read_text()) == stats
    train = torch.load(out / "train.pt", weights_only=True)
    assert set(train) == {"data"} and train["data"].shape == (10, 3, 8, 8)  # 12 images: 2 held out
    x = train["data"].double() / 255
    assert stats["mean"] == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-12)
    assert stats["std"] == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-12)
    sigma1 = torch.cdist(x.flatten(1), x.flatten(1)).max().item()
    assert stats["sigma_begin_suggestion"] == pytest.approx(sigma1, rel=1e-6)  # float32 pixels
    assert stats["num_levels_suggestion"] == num_levels_for_dim(192, sigma1, 0.01)
    assert (stats["n_train"], stats["n_test"], stats["shape"], stats["dim"]) == (10, 2, [3, 8, 8], 192)
    assert stats["split"]["kind"] == "seeded" and len(stats["split"]["test_indices"]) == 2


def test_prepare_failure_keeps_old_files(noise_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg("folder", folder=str(noise_folder), image_size=8)
    out = tmp_path / "out"
    prepare(cfg, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def half_written(obj, f) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(DataError, match="No space left"):
        prepare(_cfg("folder", folder=str(noise_folder), image_size=16), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test\.pt not found; run the prepare stage first: dvc repro prepare"):
        load_split(tmp_path, "test")
    (tmp_path / "train.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="train.pt is corrupt"):
        load_split(tmp_path, "train")
    with pytest.raises(DataError, match="stats.json not found"):
        read_stats(tmp_path)

