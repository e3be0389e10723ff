"""A bad image folder, an unwritable or full disk, a diverging run, a refused shard: one clear line,
exit status 2, no traceback, nothing half-written (the helpers: tests/stages/bad_input.py)."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncsn.storage.checkpoint import atomic_save
from ncsn.data.folder import SkippedImagesWarning, load_folder
from ncsn.storage.shards import existing_shards, read_samples
from tests.helpers import REPO, link_prepared, ncsn_command
from tests.stages.bad_input import Exploit, bad_params, cli, error_line, fake_model, files

pytestmark = pytest.mark.usefixtures("single_thread")


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
    params = bad_params(tmp_path, overrides={"base": {"dataset": "folder"},
                                          "data": {"folder": str(folder), "channels": channels, "image_size": 8}})
    with pytest.warns(SkippedImagesWarning) as record:
        rc, err = cli(capsys, "--params", str(params), "prepare")
    assert rc == 0, err
    message = str(record[0].message)
    assert "skipped 2 unreadable" in message and "broken.png" in message and "cut.jpg" in message
    out = tmp_path / "outputs" / "prepare"
    train = torch.load(out / "train.pt", weights_only=True)["data"]
    test = torch.load(out / "test.pt", weights_only=True)["data"]
    assert len(train) + len(test) == readable
    assert train.dtype == torch.uint8 and train.shape[1:] == (channels, 8, 8)
    assert files(out) == ["stats.json", "test.pt", "train.pt"]


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
    params = bad_params(tmp_path, overrides={"base": {"dataset": "folder"}, "data": {"folder": str(folder)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImagesWarning)
        rc, err = cli(capsys, "--params", str(params), "prepare")
    assert rc == 2 and fragment in error_line(err, "prepare")
    assert files(tmp_path / "outputs") == []


# ----------------------------------------------------------------------------- unwritable folder, full disk


@pytest.mark.parametrize("stage", ["prepare", "sample", "evaluate"])
def test_an_unwritable_output_folder_is_one_line_and_writes_nothing(
        stage: str, tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The output folder lies below a regular file (ENOTDIR: root ignores permission bits)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    params = bad_params(tmp_path, overrides={"paths": {stage: str(blocker / stage)}})
    if stage != "prepare":
        link_prepared(tmp_path, prepared)
        fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    if stage == "evaluate":  # inputs of evaluate, short of a trained classifier
        from ncsn.evaluation.extractor import RAW_NAME, Extractor
        from ncsn.storage.shards import write_shard

        atomic_save({}, tmp_path / "outputs" / "train" / "snapshots" / "ckpt_00000001.pt")
        write_shard(tmp_path / "outputs" / "sample" / "shards", 0, torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
                    [0, 1, 2, 3])
        monkeypatch.setattr("ncsn.evaluation.extractor.resolve_extractor",
                            lambda *a, **k: Extractor("raw", RAW_NAME, "raw_", rgb=False, has_is=False))
    before = files(tmp_path)
    rc, err = cli(capsys, "--params", str(params), stage)
    assert rc == 2 and f"cannot write {blocker / stage}" in error_line(err, stage)
    assert files(tmp_path) == before


@pytest.mark.parametrize("stage", ["train", "inpaint"])
def test_an_unwritable_output_folder_of_train_and_inpaint(
        stage: str, tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    params = bad_params(tmp_path, overrides={"paths": {stage: str(blocker / stage)}})
    link_prepared(tmp_path, prepared)
    fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    rc, err = cli(capsys, "--params", str(params), stage)
    assert rc == 2 and "cannot write" in error_line(err, stage)


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
    params = bad_params(tmp_path, overrides={"sample": {"n_samples": 12, "batch_size": 4, "n_steps_each": 1,
                                                     "trajectory_samples": 2}})
    fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    real_save, calls = torch.save, {"n": 0}

    def disk_fills_up(obj, f, *args, **kwargs):
        calls["n"] += 1
        # The third shard: the disk is full after 1000 bytes (torch.save turns that into a RuntimeError).
        return real_save(obj, _FullDisk(f, room=1000) if calls["n"] == 3 else f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    rc, err = cli(capsys, "--params", str(params), "sample")
    assert rc == 2 and "No space left on device" in error_line(err, "sample")
    shard_dir = tmp_path / "outputs" / "sample" / "shards"
    assert files(shard_dir) == ["manifest.json", "shard_00000.pt", "shard_00001.pt"]  # no partial file
    assert read_samples(shard_dir)[1].tolist() == list(range(8))

    monkeypatch.setattr(torch, "save", real_save)
    rc, err = cli(capsys, "--params", str(params), "sample")
    assert rc == 0, err
    assert read_samples(shard_dir)[1].tolist() == list(range(12)) and len(existing_shards(shard_dir)) == 3


def test_a_full_disk_while_training_is_one_line(tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    params = bad_params(tmp_path, overrides={"train": {"n_iters": 4, "snapshot_freq": 2, "batch_size": 8,
                                                    "val_size": 16, "val_freq": 4}})
    link_prepared(tmp_path, prepared)
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, _FullDisk(f, room=1000), *a, **k))
    rc, err = cli(capsys, "--params", str(params), "train")
    assert rc == 2 and "No space left on device" in error_line(err, "train")


def test_a_file_size_limit_in_a_real_process_leaves_no_partial_split(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel refuse to grow a file past 1 MiB (EFBIG), like a full disk."""
    params = bad_params(tmp_path)
    limit = 1 << 20

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(ncsn_command("--params", str(params), "prepare"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-2000:]
    line = error_line(result.stderr, "prepare")
    assert "cannot write" in line and "train.pt" in line and "File too large" in line
    assert files(tmp_path / "outputs") == []  # no split, no stats, no temporary file


# ----------------------------------------------------------------------------- divergence


def test_divergence_is_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, prepared: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import ncsn.stages.train as train_module
    from ncsn.storage.checkpoint import list_checkpoints, load_checkpoint

    params = bad_params(tmp_path, overrides={"train": {"n_iters": 8, "snapshot_freq": 3, "batch_size": 8,
                                                    "val_size": 16, "val_freq": 8}})
    link_prepared(tmp_path, prepared)
    real_loss, calls = train_module.weighted_dsm_loss, {"n": 0}

    def explodes_at_step_5(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("inf") if calls["n"] == 5 else loss

    monkeypatch.setattr(train_module, "weighted_dsm_loss", explodes_at_step_5)
    rc, err = cli(capsys, "--params", str(params), "train")
    line = error_line(err, "train")
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

    params = bad_params(tmp_path)
    link_prepared(tmp_path, prepared)
    fake_model(params, tmp_path / "outputs" / "train" / "model.pt")
    atomic_save({}, tmp_path / "outputs" / "train" / "snapshots" / "ckpt_00000001.pt")
    shard = tmp_path / "outputs" / "sample" / "shards" / "shard_00000.pt"
    shard.parent.mkdir(parents=True)
    Exploit.marker = shard.parent / "pwned"
    torch.save({"images": Exploit(), "seeds": torch.arange(4)}, shard)
    with pytest.raises(SampleError) as refused:
        read_samples(shard.parent)
    assert "\n" not in str(refused.value) and str(shard) in str(refused.value)
    rc, err = cli(capsys, "--params", str(params), "evaluate")
    line = error_line(err, "evaluate")
    assert rc == 2 and str(shard) in line and line.endswith("delete it and rerun")
    assert not Exploit.marker.exists()


@pytest.mark.parametrize("stage", ["sample", "inpaint", "report"])
def test_an_unwritable_out_is_one_line_before_any_work(stage: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """``--out /proc/...`` is refused before the stage reads anything (no model is needed to see it)."""
    params = bad_params(tmp_path)
    target = "/proc/ncsn-out/report.html" if stage == "report" else "/proc/ncsn-out"
    extra = ["--images", str(tmp_path)] if stage == "inpaint" else []
    before = files(tmp_path)
    rc, err = cli(capsys, "--params", str(params), stage, *extra, "--out", target)
    assert rc == 2 and f"cannot write {target} (--out)" in error_line(err, stage)
    assert files(tmp_path) == before
