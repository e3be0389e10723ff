"""Bad input and a hostile disk: one clear line, exit status 2, no traceback, nothing half-written.

Most cases call ``ncsn.cli.main`` in-process (the code path of ``python -m ncsn``, minus the
interpreter start-up); two run the real command to check its stderr and exit status, and one runs
it under ``RLIMIT_FSIZE`` so that the kernel refuses to grow a file, as on a full disk.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import resource
import subprocess
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ncsn.storage.checkpoint import FORMAT, atomic_save
from ncsn.cli import main
from ncsn.config import ConfigError, load_config
from ncsn.data.folder import SkippedImagesWarning, load_folder
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.storage.shards import existing_shards, read_samples
from ncsn.core.sigmas import geometric_sigmas
from tests.helpers import REPO, link_prepared, ncsn_command, write_params


pytestmark = pytest.mark.usefixtures("single_thread")


def _params(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None,
            overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """The smoke params under ``tmp_path``, edited by ``change`` (which may break them)."""
    path = write_params(tmp_path, overrides)
    if change is not None:
        params = yaml.safe_load(path.read_text())
        change(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def _error_line(err: str, stage: str) -> str:
    """The one error line of ``stage`` in ``err``; fails on a traceback or several error lines.

    A progress bar may end without a newline, so the line is taken from ``ncsn STAGE: error:`` on.
    """
    assert "Traceback" not in err, err
    marker = f"ncsn {stage}: error: "
    lines = [line[line.index(marker):] for line in err.split("\n") if marker in line]
    assert len(lines) == 1, err
    return lines[0]


def _files(folder: Path) -> list[str]:
    """Every file below ``folder`` (hidden ones included); [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _fake_model(params: Path, path: Path, *, dataset: str | None = None) -> Path:
    """A real (untrained) smoke U-Net checkpoint for 1x28x28 images, in our format."""
    cfg = load_config(params)
    config = cfg.to_dict()
    config["base"]["dataset"] = dataset or cfg.base.dataset
    config["model"] |= {"arch": "unet", "ngf": 8}
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    torch.manual_seed(0)
    net = build_model("unet", ngf=8, channels=1, image_size=28, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 1, "config": config, "sigmas": sigmas,
                 "data": {"dataset": config["base"]["dataset"], "channels": 1, "image_size": 28},
                 "model": net.state_dict(), "ema": None}, path)
    return path


# ----------------------------------------------------------------------------- params.yaml


def _set(section: str, key: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda params: params[section].__setitem__(key, value)


@pytest.mark.parametrize(("change", "fragments"), [
    (_set("train", "n_iter", 10), ["'train.n_iter'", "Did you mean 'n_iters'?"]),
    (_set("sample", "eps", -1.0), ["'sample.eps' = -1.0", "it must be > 0"]),
    (_set("train", "batch_size", "big"), ["'train.batch_size' = 'big'", "expected int"]),
    (_set("model", "sigma_end", float("inf")), ["'model.sigma_end' = inf", "> 0 and finite"]),
    (_set("inpaint", "masks", []), ["'inpaint.masks' = []", "allowed masks are"]),
    (_set("inpaint", "masks", ["left_half"]), ["'inpaint.masks' = ['left_half']", "allowed masks are"]),
    (_set("inpaint", "random_fraction", 1.0), ["'inpaint.random_fraction' = 1.0", "in (0, 1)"]),
    (_set("sample", "trajectory_samples", 0), ["'sample.trajectory_samples' = 0", ">= 1"]),
    (_set("data", "gmm_samples", -5), ["'data.gmm_samples' = -5", ">= 1"]),
    (_set("train", 1, 2), ["unknown key 'train.1'", "Valid keys in 'train'"]),
    (lambda p: p.__setitem__("profile", ["smoke"]), ["'profile' = ['smoke']", "cpu, paper, smoke"]),
    (lambda p: p.__setitem__("train", 0), ["section 'train' must be a mapping, found 0"]),
], ids=["unknown-key", "negative-eps", "wrong-type", "infinite-sigma", "no-masks", "unknown-mask", "fraction-1",
        "no-trajectory", "negative-gmm-samples", "integer-key", "profile-list", "section-scalar"])
def test_a_bad_value_is_one_line_naming_file_key_value_and_rule(
        change, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = _params(tmp_path, change)
    rc, err = _cli(capsys, "--params", str(params), "prepare")
    line = _error_line(err, "prepare")
    assert rc == 2 and line.startswith(f"ncsn prepare: error: {params}: ")
    for fragment in fragments:
        assert fragment in line
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "file not found"),
    (b"train: [unclosed\n", "not valid YAML"),
    (b"train:\n  lr: \xff\xfe\n", "cannot be read as UTF-8 text"),
], ids=["missing", "bad-yaml", "not-utf8"])
def test_an_unreadable_params_file_is_one_line(content: bytes | None, fragment: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_bytes(content)
    rc, err = _cli(capsys, "--params", str(path), "train")
    assert rc == 2 and fragment in _error_line(err, "train") and str(path) in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    params = _params(tmp_path, _set("sample", "eps", -1.0))
    with pytest.raises(ConfigError, match="sample.eps"):
        main(["--params", str(params), "--debug", "prepare"])


def test_the_real_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    params = _params(tmp_path, _set("train", "lr", "fast"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(ncsn_command("--params", str(params), "train"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"ncsn train: error: {params}: 'train.lr' = 'fast' is invalid;"
                                          " expected float."]


def test_a_sample_count_below_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for bad in ("0", "-4", "ten"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--params", str(_params(tmp_path)), "sample", "--n", bad])
        assert exit_info.value.code == 2 and "argument --n" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints


class _Exploit:
    marker: Path

    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def _truncated(params: Path, path: Path) -> None:
    data = _fake_model(params, path).read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _malicious(params: Path, path: Path) -> None:
    _Exploit.marker = path.parent / "pwned"
    torch.save({"format": FORMAT, "model": _Exploit()}, path)


@pytest.mark.parametrize(("make", "change", "fragment"), [
    (None, None, "checkpoint .*model.pt not found"),
    (_truncated, None, "is truncated or corrupt"),
    (lambda params, path: path.write_bytes(os.urandom(4096)), None, "truncated or corrupt"),
    (lambda params, path: path.write_bytes(pickle.dumps({"a": 1})), None, "truncated or corrupt"),
    (lambda params, path: torch.save({"weights": torch.ones(2)}, path), None, "is not an ncsn checkpoint"),
    (_malicious, None, "was refused: it holds objects other than tensors"),
    (lambda params, path: _fake_model(params, path, dataset="cifar10"), None,
     "expected a checkpoint trained on 'mnist5k', found 'cifar10'"),
    (_fake_model, _set("model", "arch", "ncsn"), "expected a checkpoint of arch 'ncsn', found 'unet'"),
], ids=["missing", "truncated", "random-bytes", "plain-pickle", "foreign-dict", "malicious-pickle",
        "other-dataset", "other-arch"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_bad_checkpoint_is_one_line_and_nothing_is_sampled(
        make, change, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = _params(tmp_path, change)
    model = tmp_path / "outputs" / "train" / "model.pt"
    model.parent.mkdir(parents=True)
    if make is not None:
        make(params, model)
    rc, err = _cli(capsys, "--params", str(params), "sample")
    assert rc == 2
    assert re.search(fragment, _error_line(err, "sample")), err
    assert _files(tmp_path / "outputs" / "sample") == []
    assert not (tmp_path / "outputs" / "train" / "pwned").exists()


def test_evaluate_refuses_a_model_of_another_dataset(tmp_path: Path, prepared: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    params = _params(tmp_path)
    link_prepared(tmp_path, prepared)
    _fake_model(params, tmp_path / "outputs" / "train" / "model.pt", dataset="mnist")
    rc, err = _cli(capsys, "--params", str(params), "evaluate")
    assert rc == 2 and "found 'mnist'" in _error_line(err, "evaluate")
    assert not (tmp_path / "outputs" / "evaluate").exists()


def test_a_checkpoint_of_another_dataset_is_never_registered(tmp_path: Path, mlflow_dir: Path) -> None:
    from mlflow import MlflowClient

    from ncsn.storage.checkpoint import CheckpointError
    from ncsn.tracking.registry import register_and_promote
    from ncsn.tracking.runs import stage_run

    params = _params(tmp_path, overrides={"tracking": {"enabled": True, "experiment": "bad"},
                                          "paths": {"mlflow": str(mlflow_dir)}})
    cfg = load_config(params)
    model = _fake_model(params, tmp_path / "model.pt", dataset="mnist")
    with stage_run(cfg, "evaluate") as tracker:
        with pytest.raises(CheckpointError, match="expected a checkpoint trained on 'mnist5k', found 'mnist'"):
            register_and_promote(cfg, tracker, model, {"classifier_fid": 1.0, "n_samples": 32})
    assert MlflowClient().search_registered_models() == []


def test_inpaint_refuses_a_model_of_another_dataset(tmp_path: Path, prepared: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    params = _params(tmp_path)
    link_prepared(tmp_path, prepared)
    config = load_config(params).to_dict()
    config["base"]["dataset"] = "cifar10"
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    net = build_model(**network_args(load_config(params).model), channels=3, image_size=8, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 1, "config": config, "sigmas": sigmas,
                 "data": {"dataset": "cifar10", "channels": 3, "image_size": 8}, "model": net.state_dict(),
                 "ema": None}, tmp_path / "outputs" / "train" / "model.pt")
    rc, err = _cli(capsys, "--params", str(params), "inpaint")
    assert rc == 2 and "cifar10" in _error_line(err, "inpaint")


# ----------------------------------------------------------------------------- image folders


def _rgb(seed: int, h: int = 12, w: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mixed_folder(root: Path) -> tuple[Path, int]:
    """Every common pixel mode, plus junk and corrupt files; returns (folder, readable images)."""
    root.mkdir(parents=True)
    rgb = _rgb(0)
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(root / "gray.png")
    Image.fromarray(rgb).convert("LA").save(root / "la.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(root / "rgba.png")
    Image.fromarray(rgb).convert("P").save(root / "palette_transparent.png", transparency=0)
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb[..., 0] > 128).save(root / "bilevel.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "sixteen_bit.png")
    (root / "sub").mkdir()
    Image.fromarray(_rgb(1, 30, 8)).save(root / "sub" / "tall.webp")
    Image.fromarray(rgb).save(root / "sub" / "animated.gif", save_all=True, append_images=[Image.fromarray(255 - rgb)])
    (root / "notes.txt").write_text("not an image")  # ignored: no image extension
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # skipped with a warning
    (root / "sub" / "cut.jpg").write_bytes((root / "cmyk.jpg").read_bytes()[:40])  # truncated JPEG
    return root, 10


@pytest.mark.parametrize("channels", [1, 3])
def test_an_image_folder_with_mixed_modes_junk_and_corrupt_files(
        channels: int, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, readable = _mixed_folder(tmp_path / "images")
    params = _params(tmp_path, overrides={"base": {"dataset": "folder"},
                                          "data": {"folder": str(folder), "channels": channels, "image_size": 8}})
    with pytest.warns(SkippedImagesWarning) as record:
        rc, err = _cli(capsys, "--params", str(params), "prepare")
    assert rc == 0, err
    message = str(record[0].message)
    assert "skipped 2 unreadable" in message and "broken.png" in message and "cut.jpg" in message
    out = tmp_path / "outputs" / "prepare"
    train = torch.load(out / "train.pt", weights_only=True)["data"]
    test = torch.load(out / "test.pt", weights_only=True)["data"]
    assert len(train) + len(test) == readable
    assert train.dtype == torch.uint8 and train.shape[1:] == (channels, 8, 8)
    assert _files(out) == ["stats.json", "test.pt", "train.pt"]


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    gray = _rgb(2)[..., 0]
    (tmp_path / "a").mkdir()
    Image.fromarray(gray).save(tmp_path / "a" / "eight.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "a" / "sixteen.png")
    images, paths = load_folder(tmp_path / "a", image_size=8, channels=1)
    assert [p.name for p in paths] == ["eight.png", "sixteen.png"]
    assert torch.equal(images[0], images[1]) and images[1].float().std() > 10


@pytest.mark.parametrize(("setup", "fragment"), [
    (lambda d: d.mkdir(), "no readable images in"),
    (lambda d: (d.mkdir(), (d / "a.png").write_bytes(b"nope"), (d / "b.txt").write_text("x")), "no readable images"),
    (lambda d: (d.mkdir(), Image.fromarray(_rgb(0)).save(d / "only.png")), "at least 2"),
    (lambda d: None, "is not a directory"),
], ids=["empty", "only-junk", "one-image", "missing"])
def test_an_unusable_image_folder_is_one_line_and_writes_nothing(
        setup, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "images"
    setup(folder)
    params = _params(tmp_path, overrides={"base": {"dataset": "folder"}, "data": {"folder": str(folder)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImagesWarning)
        rc, err = _cli(capsys, "--params", str(params), "prepare")
    assert rc == 2 and fragment in _error_line(err, "prepare")
    assert _files(tmp_path / "outputs") == []


# ----------------------------------------------------------------------------- unwritable folder, full disk


@pytest.mark.parametrize("stage", ["prepare", "sample", "evaluate"])
def test_an_unwritable_output_folder_is_one_line_and_writes_nothing(
        stage: str, tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The output folder lies below a regular file (ENOTDIR: root ignores permission bits)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    params = _params(tmp_path, overrides={"paths": {stage: str(blocker / stage)}})
    if stage != "prepare":
        link_prepared(tmp_path, prepared)
        _fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    if stage == "evaluate":  # inputs of evaluate, short of a trained classifier
        from ncsn.evaluation.extractor import RAW_NAME, Extractor
        from ncsn.storage.shards import write_shard

        atomic_save({}, tmp_path / "outputs" / "train" / "snapshots" / "ckpt_00000001.pt")
        write_shard(tmp_path / "outputs" / "sample" / "shards", 0, torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
                    [0, 1, 2, 3])
        monkeypatch.setattr("ncsn.evaluation.extractor.resolve_extractor",
                            lambda *a, **k: Extractor("raw", RAW_NAME, "raw_", rgb=False, has_is=False))
    before = _files(tmp_path)
    rc, err = _cli(capsys, "--params", str(params), stage)
    assert rc == 2 and f"cannot write {blocker / stage}" in _error_line(err, stage)
    assert _files(tmp_path) == before


@pytest.mark.parametrize("stage", ["train", "inpaint"])
def test_an_unwritable_output_folder_of_train_and_inpaint(
        stage: str, tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    params = _params(tmp_path, overrides={"paths": {stage: str(blocker / stage)}})
    link_prepared(tmp_path, prepared)
    _fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    rc, err = _cli(capsys, "--params", str(params), stage)
    assert rc == 2 and "cannot write" in _error_line(err, stage)


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def test_a_full_disk_while_sampling_keeps_whole_shards_and_the_rerun_completes(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    params = _params(tmp_path, overrides={"sample": {"n_samples": 12, "batch_size": 4, "n_steps_each": 1,
                                                     "trajectory_samples": 2}})
    _fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    real_save, calls = torch.save, {"n": 0}

    def disk_fills_up(obj, f, *args, **kwargs):
        calls["n"] += 1
        # The third shard: the disk is full after 1000 bytes (torch.save turns that into a RuntimeError).
        return real_save(obj, _FullDisk(f, room=1000) if calls["n"] == 3 else f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    rc, err = _cli(capsys, "--params", str(params), "sample")
    assert rc == 2 and "No space left on device" in _error_line(err, "sample")
    shard_dir = tmp_path / "outputs" / "sample" / "shards"
    assert _files(shard_dir) == ["manifest.json", "shard_00000.pt", "shard_00001.pt"]  # no partial file
    assert read_samples(shard_dir)[1].tolist() == list(range(8))

    monkeypatch.setattr(torch, "save", real_save)
    rc, err = _cli(capsys, "--params", str(params), "sample")
    assert rc == 0, err
    assert read_samples(shard_dir)[1].tolist() == list(range(12)) and len(existing_shards(shard_dir)) == 3


def test_a_full_disk_while_training_is_one_line(tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = _params(tmp_path, overrides={"train": {"n_iters": 4, "snapshot_freq": 2, "batch_size": 8,
                                                    "val_size": 16, "val_freq": 4}})
    link_prepared(tmp_path, prepared)
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, _FullDisk(f, room=1000), *a, **k))
    rc, err = _cli(capsys, "--params", str(params), "train")
    assert rc == 2 and "No space left on device" in _error_line(err, "train")


def test_a_file_size_limit_in_a_real_process_leaves_no_partial_split(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse to grow a file past 1 MiB (EFBIG), like a full disk."""
    params = _params(tmp_path)
    limit = 1 << 20

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(ncsn_command("--params", str(params), "prepare"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-2000:]
    line = _error_line(result.stderr, "prepare")
    assert "cannot write" in line and "train.pt" in line and "File too large" in line
    assert _files(tmp_path / "outputs") == []  # no split, no stats, no temporary file


# ----------------------------------------------------------------------------- divergence


def test_divergence_is_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import ncsn.stages.train as train_module
    from ncsn.storage.checkpoint import list_checkpoints, load_checkpoint

    params = _params(tmp_path, overrides={"train": {"n_iters": 8, "snapshot_freq": 3, "batch_size": 8,
                                                    "val_size": 16, "val_freq": 8}})
    link_prepared(tmp_path, prepared)
    real_loss, calls = train_module.weighted_dsm_loss, {"n": 0}

    def explodes_at_step_5(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("inf") if calls["n"] == 5 else loss

    monkeypatch.setattr(train_module, "weighted_dsm_loss", explodes_at_step_5)
    rc, err = _cli(capsys, "--params", str(params), "train")
    line = _error_line(err, "train")
    assert rc == 2 and "loss is inf at step 5" in line and "last good checkpoint" in line
    kept = list_checkpoints(tmp_path / "outputs" / "train" / "checkpoints")
    assert [step for step, _ in kept] == [3]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(kept[0][1])["model"].values())
    assert not (tmp_path / "outputs" / "train" / "model.pt").exists()  # no final model from a diverged run


# ----------------------------------------------------------------------------- refused sample shard


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_refused_sample_shard_is_one_line_and_nothing_runs(tmp_path: Path, prepared: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from ncsn.storage.shards import SampleError

    params = _params(tmp_path)
    link_prepared(tmp_path, prepared)
    _fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    atomic_save({}, tmp_path / "outputs" / "train" / "snapshots" / "ckpt_00000001.pt")
    shard = tmp_path / "outputs" / "sample" / "shards" / "shard_00000.pt"
    shard.parent.mkdir(parents=True)
    _Exploit.marker = shard.parent / "pwned"
    torch.save({"images": _Exploit(), "seeds": torch.arange(4)}, shard)
    with pytest.raises(SampleError) as refused:
        read_samples(shard.parent)
    assert "\n" not in str(refused.value) and str(shard) in str(refused.value)
    rc, err = _cli(capsys, "--params", str(params), "evaluate")
    line = _error_line(err, "evaluate")
    assert rc == 2 and str(shard) in line and line.endswith("delete it and rerun")
    assert not _Exploit.marker.exists()
