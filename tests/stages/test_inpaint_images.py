"""``ncsn inpaint --images DIR --masks DIR --out DIR``: a user's own PNG images, completed.

A real smoke U-Net for 8x8 images (random non-zero weights, our checkpoint format) stands in
for a trained model: what is checked is the plumbing, not the quality of the completions.
The observed pixels must come back byte for byte; every bad input is one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.storage.checkpoint import FORMAT, atomic_save
from ncsn.cli import main
from ncsn.config import load_config
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.core.sigmas import geometric_sigmas
from tests.helpers import write_params

SIZE = 8

pytestmark = pytest.mark.usefixtures("single_thread")


def _params(tmp_path: Path, **data) -> Path:
    return write_params(tmp_path, {"inpaint": {"n_steps_each": 2}, "data": data} if data else
                        {"inpaint": {"n_steps_each": 2}})


def _checkpoint(params: Path, path: Path, *, channels: int = 1, logit: bool = False) -> Path:
    """A smoke U-Net for ``channels``x8x8 images, every weight non-zero, saved at ``path``."""
    cfg = load_config(params)
    config = cfg.to_dict()
    config["data"]["logit_transform"] = logit
    sigmas = geometric_sigmas(1.0, 0.01, 4)
    torch.manual_seed(0)
    net = build_model(**network_args(cfg.model), channels=channels, image_size=SIZE, sigmas=sigmas)
    with torch.no_grad():  # the output layer starts at zero: give every weight a value
        for param in net.parameters():
            param.add_(0.1 * torch.randn_like(param))
    atomic_save({"format": FORMAT, "step": 1, "config": config, "sigmas": sigmas,
                 "data": {"dataset": cfg.base.dataset, "channels": channels, "image_size": SIZE},
                 "model": net.state_dict(), "ema": None}, path)
    return path


def _pixels(seed: int, channels: int = 1, size: int = SIZE) -> np.ndarray:
    shape = (size, size) if channels == 1 else (size, size, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _disc_mask(size: int = SIZE) -> np.ndarray:
    """White (observed) outside a disc, black (to fill) inside: a mask of no built-in kind."""
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - 3.2) ** 2 + (xx - 4.6) ** 2 < 7, 0, 255).astype(np.uint8)


def _folders(tmp_path: Path, names=("a.png", "b.png", "c.png"), channels: int = 1) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(exist_ok=True)
    masks.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        Image.fromarray(_pixels(k, channels)).save(images / name)
        Image.fromarray(_disc_mask() if k % 2 == 0 else np.roll(_disc_mask(), 2, axis=1)).save(masks / name)
    return images, masks


def _cli(capsys: pytest.CaptureFixture, params: Path, *argv: str) -> tuple[int, str]:
    rc = main(["--params", str(params), "inpaint", *argv])
    return rc, capsys.readouterr().err


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img).copy()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(params with paths under tmp_path, the final model at paths.train/model.pt)."""
    params = _params(tmp_path)
    return params, _checkpoint(params, tmp_path / "outputs" / "train" / "model.pt")


@pytest.mark.parametrize("logit", [False, True], ids=["pixels", "logit"])
def test_observed_pixels_come_back_byte_identical(logit: bool, tmp_path: Path, capsys) -> None:
    params = _params(tmp_path)
    _checkpoint(params, tmp_path / "outputs" / "train" / "model.pt", logit=logit)
    images, masks = _folders(tmp_path)
    out = tmp_path / "out"
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(out))
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]
    for name in ("a.png", "b.png", "c.png"):
        given, got, white = _read(images / name), _read(out / name), _read(masks / name) == 255
        assert got.shape == given.shape and got.dtype == np.uint8
        assert np.array_equal(got[white], given[white])
        assert (got[~white] != given[~white]).any()  # the holes were filled, not copied
    grid = _read(out / "grid" / "side_by_side.png")
    assert grid.shape[:2] == (3 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)  # one row per image: masked, completed, original


def test_images_are_converted_to_the_models_channels(tmp_path: Path, capsys) -> None:
    params = _params(tmp_path)
    _checkpoint(params, tmp_path / "outputs" / "train" / "model.pt", channels=3)
    images, masks = _folders(tmp_path, names=("rgb.png",), channels=3)
    rgba = np.dstack([_pixels(5, 3), _pixels(6)])
    Image.fromarray(rgba).save(images / "rgba.png")
    Image.fromarray(_pixels(7)).save(images / "gray.png")
    for name in ("rgba.png", "gray.png"):
        Image.fromarray(_disc_mask()).save(masks / name)
    out = tmp_path / "out"
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(out))
    assert rc == 0, err
    white = _disc_mask() == 255
    expected = {"rgb.png": _pixels(0, 3), "rgba.png": rgba[..., :3], "gray.png": np.repeat(_pixels(7)[..., None], 3, 2)}
    for name, pixels in expected.items():
        got = _read(out / name)
        assert got.shape == (SIZE, SIZE, 3)
        assert np.array_equal(got[white], pixels[white]), name


def test_each_completion_is_the_same_whatever_the_other_images(setup, tmp_path: Path, capsys) -> None:
    params, _ = setup
    images, masks = _folders(tmp_path)
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "all"))
    assert rc == 0, err
    for name in ("a.png", "c.png"):
        (images / name).unlink()
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "one"))
    assert rc == 0, err
    assert (tmp_path / "one" / "b.png").read_bytes() == (tmp_path / "all" / "b.png").read_bytes()
    assert not np.array_equal(_read(tmp_path / "all" / "a.png"), _read(tmp_path / "all" / "c.png"))


def test_model_option_takes_a_checkpoint_path(tmp_path: Path, capsys) -> None:
    params = _params(tmp_path)  # no final model: --model names the checkpoint
    model = _checkpoint(params, tmp_path / "elsewhere" / "model.pt")
    images, masks = _folders(tmp_path, names=("a.png",))
    out = tmp_path / "out"
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(out), "--model",
                   str(model))
    assert rc == 0, err
    assert (out / "a.png").is_file()
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(out))
    assert rc == 2 and "dvc repro train" in err  # without --model: the pipeline's final model, which is missing


def _bad_size_image(images: Path, masks: Path) -> None:
    Image.fromarray(_pixels(0, size=12)).save(images / "a.png")


def _bad_size_mask(images: Path, masks: Path) -> None:
    Image.fromarray(np.full((SIZE, SIZE + 4), 255, np.uint8)).save(masks / "b.png")


def _grey_mask(images: Path, masks: Path) -> None:
    mask = _disc_mask()
    mask[0, :3] = 128
    mask[5, 5] = 254
    Image.fromarray(mask).save(masks / "c.png")


def _garbage(images: Path, masks: Path) -> None:
    (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def _jpeg(images: Path, masks: Path) -> None:
    Image.fromarray(_pixels(0)).save(images / "a.png", format="JPEG")


def _sixteen_bit(images: Path, masks: Path) -> None:
    Image.fromarray(_pixels(0).astype(np.uint16) * 257).save(images / "a.png")


def _missing_mask(images: Path, masks: Path) -> None:
    (masks / "b.png").unlink()


def _no_pngs(images: Path, masks: Path) -> None:
    for path in images.iterdir():
        path.unlink()


@pytest.mark.parametrize(("spoil", "fragments"), [
    (_bad_size_image, ["a.png", "12x12", "8x8"]),
    (_bad_size_mask, ["mask", "b.png", "12x8", "8x8"]),
    (_grey_mask, ["c.png", "not binary", "4 of 64 pixels"]),
    (_garbage, ["cannot read image", "b.png"]),
    (_jpeg, ["a.png", "JPEG", "not a PNG"]),
    (_sixteen_bit, ["a.png", "mode I;16", "8 bits"]),
    (_missing_mask, ["1 image(s) have no mask", "b.png"]),
    (_no_pngs, ["no PNG file"]),
], ids=["image-size", "mask-size", "non-binary-mask", "unreadable", "jpeg", "16-bit", "missing-mask", "empty"])
def test_bad_input_is_one_line_and_nothing_is_written(spoil, fragments: list[str], setup, tmp_path: Path,
                                                      capsys) -> None:
    params, _ = setup
    images, masks = _folders(tmp_path)
    spoil(images, masks)
    out = tmp_path / "out"
    rc, err = _cli(capsys, params, "--images", str(images), "--masks", str(masks), "--out", str(out))
    lines = [line for line in err.splitlines() if "ncsn inpaint: error:" in line]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--images", "{images}", "--out", "{out}"], "--images needs --masks"),
    (["--images", "{images}", "--masks", "{masks}"], "--images needs --out"),
    (["--images", "{images}", "--masks", "{masks}", "--out", "{images}"], "is the --images folder"),
    (["--masks", "{masks}"], "--masks only work with --images"),
    (["--images", "{images}", "--masks", "{out}", "--out", "{masks}"], "is not a directory"),
], ids=["no-masks", "no-out", "out-is-images", "masks-alone", "masks-missing"])
def test_incomplete_options_are_one_line(argv: list[str], fragment: str, setup, tmp_path: Path, capsys) -> None:
    params, _ = setup
    images, masks = _folders(tmp_path)
    folders = {"images": images, "masks": masks, "out": tmp_path / "out"}
    rc, err = _cli(capsys, params, *(a.format(**folders) for a in argv))
    assert rc == 2 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in images.iterdir()) == ["a.png", "b.png", "c.png"]
