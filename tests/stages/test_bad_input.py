"""Bad input and a hostile disk: one clear line, exit status 2, no traceback, nothing half-written.

Most cases call ``ncsn.cli.main`` in-process (the code path of ``python -m ncsn``, minus the
interpreter start-up); two run the real command to check its stderr and exit status, and one runs
it under ``RLIMIT_FSIZE`` so that the kernel refuses to grow a file, as on a full disk.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from ncsn.storage.checkpoint import FORMAT, atomic_save
from ncsn.cli import main
from ncsn.config import ConfigError, load_config
from ncsn.models import build_model
from ncsn.storage.score_model import network_args
from ncsn.core.sigmas import geometric_sigmas
from tests.helpers import REPO, link_prepared, ncsn_command
from tests.stages.bad_input import Exploit, bad_params, cli, error_line, fake_model, files

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- params.yaml


def set_key(section: str, key: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda params: params[section].__setitem__(key, value)


@pytest.mark.parametrize(("change", "fragments"), [
    (set_key("train", "n_iter", 10), ["'train.n_iter'", "Did you mean 'n_iters'?"]),
    (set_key("sample", "eps", -1.0), ["'sample.eps' = -1.0", "it must be > 0"]),
    (set_key("train", "batch_size", "big"), ["'train.batch_size' = 'big'", "expected int"]),
    (set_key("model", "sigma_end", float("inf")), ["'model.sigma_end' = inf", "> 0 and finite"]),
    (set_key("inpaint", "masks", []), ["'inpaint.masks' = []", "allowed masks are"]),
    (set_key("inpaint", "masks", ["left_half"]), ["'inpaint.masks' = ['left_half']", "allowed masks are"]),
    (set_key("inpaint", "random_fraction", 1.0), ["'inpaint.random_fraction' = 1.0", "in (0, 1)"]),
    (set_key("sample", "trajectory_samples", 0), ["'sample.trajectory_samples' = 0", ">= 1"]),
    (set_key("data", "gmm_samples", -5), ["'data.gmm_samples' = -5", ">= 1"]),
    (set_key("train", 1, 2), ["unknown key 'train.1'", "Valid keys in 'train'"]),
    (lambda p: p.__setitem__("profile", ["smoke"]), ["'profile' = ['smoke']", "cpu, paper, smoke"]),
    (lambda p: p.__setitem__("train", 0), ["section 'train' must be a mapping, found 0"]),
], ids=["unknown-key", "negative-eps", "wrong-type", "infinite-sigma", "no-masks", "unknown-mask", "fraction-1",
        "no-trajectory", "negative-gmm-samples", "integer-key", "profile-list", "section-scalar"])
def test_a_bad_value_is_one_line_naming_file_key_value_and_rule(
        change, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = bad_params(tmp_path, change)
    rc, err = cli(capsys, "--params", str(params), "prepare")
    line = error_line(err, "prepare")
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
    rc, err = cli(capsys, "--params", str(path), "train")
    assert rc == 2 and fragment in error_line(err, "train") and str(path) in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    params = bad_params(tmp_path, set_key("sample", "eps", -1.0))
    with pytest.raises(ConfigError, match="sample.eps"):
        main(["--params", str(params), "--debug", "prepare"])


def test_the_real_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    params = bad_params(tmp_path, set_key("train", "lr", "fast"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(ncsn_command("--params", str(params), "train"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"ncsn train: error: {params}: 'train.lr' = 'fast' is invalid;"
                                          " expected float."]


def test_a_sample_count_below_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for bad in ("0", "-4", "ten"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--params", str(bad_params(tmp_path)), "sample", "--n", bad])
        assert exit_info.value.code == 2 and "argument --n" in capsys.readouterr().err


# ----------------------------------------------------------------------------- checkpoints


def _truncated(params: Path, path: Path) -> None:
    data = fake_model(params, path).read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _malicious(params: Path, path: Path) -> None:
    Exploit.marker = path.parent / "pwned"
    torch.save({"format": FORMAT, "model": Exploit()}, path)


@pytest.mark.parametrize(("make", "change", "fragment"), [
    (None, None, "checkpoint .*model.pt not found"),
    (_truncated, None, "is truncated or corrupt"),
    (lambda params, path: path.write_bytes(os.urandom(4096)), None, "truncated or corrupt"),
    (lambda params, path: path.write_bytes(pickle.dumps({"a": 1})), None, "truncated or corrupt"),
    (lambda params, path: torch.save({"weights": torch.ones(2)}, path), None, "is not an ncsn checkpoint"),
    (_malicious, None, "was refused: it holds objects other than tensors"),
    (lambda params, path: fake_model(params, path, dataset="cifar10"), None,
     "expected a checkpoint trained on 'mnist5k', found 'cifar10'"),
    (fake_model, set_key("model", "arch", "ncsn"), "expected a checkpoint of arch 'ncsn', found 'unet'"),
], ids=["missing", "truncated", "random-bytes", "plain-pickle", "foreign-dict", "malicious-pickle",
        "other-dataset", "other-arch"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_bad_checkpoint_is_one_line_and_nothing_is_sampled(
        make, change, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = bad_params(tmp_path, change)
    model = tmp_path / "outputs" / "train" / "model.pt"
    model.parent.mkdir(parents=True)
    if make is not None:
        make(params, model)
    rc, err = cli(capsys, "--params", str(params), "sample")
    assert rc == 2
    assert re.search(fragment, error_line(err, "sample")), err
    assert files(tmp_path / "outputs" / "sample") == []
    assert not (tmp_path / "outputs" / "train" / "pwned").exists()


def test_evaluate_refuses_a_model_of_another_dataset(tmp_path: Path, prepared: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    params = bad_params(tmp_path)
    link_prepared(tmp_path, prepared)
    fake_model(params, tmp_path / "outputs" / "train" / "model.pt", dataset="mnist")
    rc, err = cli(capsys, "--params", str(params), "evaluate")
    assert rc == 2 and "found 'mnist'" in error_line(err, "evaluate")
    assert not (tmp_path / "outputs" / "evaluate").exists()


def test_a_checkpoint_of_another_dataset_is_never_registered(tmp_path: Path, mlflow_dir: Path) -> None:
    from mlflow import MlflowClient

    from ncsn.storage.checkpoint import CheckpointError
    from ncsn.tracking.registry import register_and_promote
    from ncsn.tracking.runs import stage_run

    params = bad_params(tmp_path, overrides={"tracking": {"enabled": True, "experiment": "bad"},
                                          "paths": {"mlflow": str(mlflow_dir)}})
    cfg = load_config(params)
    model = fake_model(params, tmp_path / "model.pt", dataset="mnist")
    with stage_run(cfg, "evaluate") as tracker:
        with pytest.raises(CheckpointError, match="expected a checkpoint trained on 'mnist5k', found 'mnist'"):
            register_and_promote(cfg, tracker, model, {"classifier_fid": 1.0, "n_samples": 32})
    assert MlflowClient().search_registered_models() == []


def test_inpaint_refuses_a_model_of_another_dataset(tmp_path: Path, prepared: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    params = bad_params(tmp_path)
    link_prepared(tmp_path, prepared)
    config = load_config(params).to_dict()
    config["base"]["dataset"] = "cifar10"
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    net = build_model(**network_args(load_config(params).model), channels=3, image_size=8, sigmas=sigmas)
    atomic_save({"format": FORMAT, "step": 1, "config": config, "sigmas": sigmas,
                 "data": {"dataset": "cifar10", "channels": 3, "image_size": 8}, "model": net.state_dict(),
                 "ema": None}, tmp_path / "outputs" / "train" / "model.pt")
    rc, err = cli(capsys, "--params", str(params), "inpaint")
    assert rc == 2 and "cifar10" in error_line(err, "inpaint")


