"""``ncsn compare``: runs laid out as the pipeline logs them, compared in a CSV and an HTML page.

The MLflow store is built directly with MLflow's client (no training): pipeline parent runs with
nested stage runs, their parameters, metrics, a sample grid and a σ schedule as artifacts, and
registered versions with a ``champion`` alias. The page is opened in headless Chromium.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ncsn.cli import main

T0 = 1_700_000_000_000  # ms
STAGES = ("prepare", "classifier", "train", "sample", "evaluate")
CLASSIFIER = {"classifier_is": 8.0, "classifier_fid": 30.0, "classifier_kid_mean": 0.02, "classifier_kid_std": 0.001,
              "floor_classifier_fid_train_vs_test": 3.0, "floor_classifier_kid_mean_train_vs_test": 0.001,
              "reference_classifier_is_test": 9.5, "n_samples": 64.0}
INCEPTION = {"is": 4.0, "fid": 90.0, "kid_mean": 0.08, "kid_std": 0.004, "floor_fid_train_vs_test": 12.0,
             "floor_kid_mean_train_vs_test": 0.003, "reference_is_test": 4.5, "n_samples": 64.0}


def _grid_png(path: Path, shade: int) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("L", (56, 28), color=shade)
    ImageDraw.Draw(image).ellipse((6, 6, 22, 22), fill=255 - shade)
    image.save(path)
    return path


def _pipeline(client, experiment_id: str, tmp: Path, *, start: int, dataset: str, params: dict[str, Any],
              metrics: dict[str, float] | None, stages=STAGES, status: str = "FINISHED",
              tags: dict[str, str] | None = None) -> dict[str, str]:
    """A parent run and its stage runs, as ``ncsn pipeline`` leaves them; returns ``{name: run_id}``."""
    flat = {"profile": "smoke", "base.dataset": dataset, "paths.train": f"/clone-{start}/outputs/train", **params}
    parent = client.create_run(experiment_id, start_time=start, run_name=f"pipeline-{start}",
                               tags={"ncsn.stage": "pipeline", **(tags or {})}).info.run_id
    client.log_batch(parent, params=[_param(k, v) for k, v in flat.items()])
    ids, t = {"pipeline": parent}, start
    for k, stage in enumerate(stages):
        run = client.create_run(experiment_id, start_time=t, run_name=stage,
                                tags={"ncsn.stage": stage, "mlflow.parentRunId": parent}).info.run_id
        client.log_batch(run, params=[_param(k_, v) for k_, v in flat.items()])
        if stage == "train":
            sigmas = tmp / f"sigmas-{start}.csv"
            sigmas.write_text("level,sigma\n" + "".join(f"{i},{s}\n" for i, s in enumerate(params["sigmas"])))
            folder = tmp / f"s{start}"
            folder.mkdir()
            shutil.copy(sigmas, folder / "sigmas.csv")
            client.log_artifact(run, str(folder / "sigmas.csv"), "sigma_schedule")
        if stage == "sample":
            client.log_artifact(run, str(_grid_png(tmp / "grid.png", start % 200)), "samples")
        if stage == "evaluate" and metrics is not None:
            from mlflow.entities import Metric

            client.log_batch(run, metrics=[Metric(key, value, t, 0) for key, value in metrics.items()])
        client.set_terminated(run, "FINISHED", end_time=t + 1000 * (k + 2))
        ids[stage] = run
        t += 1000 * (k + 2)
    client.set_terminated(parent, status, end_time=t + 500)
    return ids


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))


def _register(client, ids: dict[str, str], dataset: str, champion: bool) -> str:
    from mlflow.exceptions import MlflowException

    name = f"ncsn-{dataset}"
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass
    run = client.get_run(ids["evaluate"])
    version = client.create_model_version(name, f"{run.info.artifact_uri}/registered_model",
                                          run_id=ids["evaluate"]).version
    if champion:
        client.set_registered_model_alias(name, "champion", version)
    return str(version)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> dict[str, Any]:
    """Runs of mnist5k (A, B evaluated; C cached; D failed) and fashion_mnist (E)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("compare")
    (root / "mlflow").mkdir()
    shutil.copyfile(empty_mlflow_db, root / "mlflow" / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("ncsn", artifact_location=(root / "mlflow" / "artifacts").as_uri())
    mnist = {"train.lr": 0.001, "model.sigma_begin": 1.0, "sigmas": [1.0, 0.1, 0.01]}
    runs = {
        "A": _pipeline(client, exp, root, start=T0, dataset="mnist5k", params=mnist, metrics=CLASSIFIER),
        "B": _pipeline(client, exp, root, start=T0 + 100_000, dataset="mnist5k", params=mnist,
                       metrics={**CLASSIFIER, "classifier_fid": 40.0, "floor_classifier_fid_train_vs_test": 4.0}),
        "C": _pipeline(client, exp, root, start=T0 + 300_000, dataset="mnist5k", params=mnist, metrics=None,
                       stages=("sample",)),
        "D": _pipeline(client, exp, root, start=T0 + 400_000, dataset="mnist5k", params=mnist,
                       metrics=CLASSIFIER, status="FAILED"),
        "E": _pipeline(client, exp, root, start=T0 + 200_000, dataset="fashion_mnist",
                       params={"profile": "cpu", "train.lr": 0.0005, "model.sigma_begin": 50.0, "sigmas": [50.0, 5.0, 0.5, 0.05]},
                       metrics=INCEPTION, tags={"dataset": "fashion_mnist", "profile": "cpu", "git_commit": "c0ffee" * 6}),
    }
    versions = {"A": _register(client, runs["A"], "mnist5k", champion=True),
                "B": _register(client, runs["B"], "mnist5k", champion=False),
                "E": _register(client, runs["E"], "fashion_mnist", champion=True)}
    return {"root": root, "uri": uri, "runs": runs, "versions": versions}


@pytest.fixture
def use_store(store, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    return store


def _compare(out: Path, *args: str) -> list[dict[str, str]]:
    assert main(["compare", "--out", str(out), *args]) == 0
    assert (out / "comparison.html").is_file()
    with (out / "comparison.csv").open() as f:
        return list(csv.DictReader(f))


def test_default_is_the_latest_evaluated_finished_run_of_each_dataset(use_store, tmp_path: Path) -> None:
    rows = _compare(tmp_path)
    runs = use_store["runs"]
    assert [r["run_id"] for r in rows] == [runs["B"]["pipeline"], runs["E"]["pipeline"]]  # oldest first
    b, e = rows
    assert (b["dataset"], b["profile"], b["extractor"]) == ("mnist5k", "smoke", "classifier")
    assert (e["dataset"], e["profile"], e["git_commit"], e["extractor"]) == ("fashion_mnist", "cpu", "c0ffee" * 6,
                                                                            "Inception")
    assert float(b["fid"]) == 40.0 and float(b["floor_fid"]) == 4.0 and float(b["fid_over_floor"]) == 10.0
    assert float(e["fid"]) == 90.0 and float(e["fid_over_floor"]) == pytest.approx(90.0 / 12.0)
    assert float(e["is"]) == 4.0 and float(b["kid_mean"]) == 0.02 and float(b["reference_is"]) == 9.5
    # the parameters that differ, and only those (paths.* are where outputs went, not what ran)
    assert sorted(k for k in b if k.startswith("param:")) == ["param:base.dataset", "param:model.sigma_begin",
                                                              "param:profile", "param:train.lr"]
    assert (b["param:train.lr"], e["param:train.lr"]) == ("0.001", "0.0005")
    assert (b["registered_model"], b["model_version"], b["champion"], b["champion_version"]) \
        == ("ncsn-mnist5k", "2", "false", "1")
    assert (e["registered_model"], e["model_version"], e["champion"]) == ("ncsn-fashion_mnist", "1", "true")
    assert [float(b[f"wall_s:{s}"]) for s in STAGES] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert float(b["wall_s:total"]) == 20.5


def test_filters_and_run_ids(use_store, tmp_path: Path) -> None:
    runs = use_store["runs"]
    assert [r["run_id"] for r in _compare(tmp_path / "a", "--dataset", "mnist5k")] == [runs["B"]["pipeline"]]
    assert [r["run_id"] for r in _compare(tmp_path / "b", "--experiment", "ncsn", "--dataset", "fashion_mnist")] \
        == [runs["E"]["pipeline"]]
    # a stage run stands for its pipeline run; the champion flag follows the alias
    rows = _compare(tmp_path / "c", "--run-ids", runs["A"]["train"], runs["C"]["pipeline"])
    assert [r["run_id"] for r in rows] == [runs["A"]["pipeline"], runs["C"]["pipeline"]]
    assert (rows[0]["model_version"], rows[0]["champion"], rows[0]["fid_over_floor"]) == ("1", "true", "10.0")
    assert (rows[1]["fid"], rows[1]["model_version"], rows[1]["wall_s:train"]) == ("", "", "")  # cached stages
    assert "param:base.dataset" not in rows[0]  # same dataset: not a differing parameter


@pytest.mark.parametrize("args, message", [
    (["--run-ids", "0123456789abcdef"], "unknown run id '0123456789abcdef'"),
    (["--dataset", "cifar10"], "no runs found: no finished pipeline run of dataset cifar10"),
    (["--experiment", "nope"], "--experiment 'nope': no such experiment"),
    (["--run-ids", "x", "--dataset", "mnist5k"], "--run-ids names the runs itself"),
])
def test_user_errors_are_one_line(use_store, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    assert main(["compare", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ncsn compare: error: ") and message in err and err.count("\n") == 1
    if "cifar10" in message:
        assert "fashion_mnist, mnist5k" in err and "ncsn pipeline" in err
    assert not (tmp_path / "comparison.html").exists()


def test_store_from_params_and_empty_store(tmp_path: Path, capsys, monkeypatch, empty_mlflow_db: Path) -> None:
    from tests.helpers import write_params

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = write_params(tmp_path)
    mlflow_dir = Path(yaml.safe_load(params.read_text())["paths"]["mlflow"])
    assert main(["--params", str(params), "compare", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no runs found: the MLflow store {mlflow_dir / 'mlflow.db'} does not exist" in err
    assert "make run" in err and not mlflow_dir.exists()  # nothing created
    mlflow_dir.mkdir(parents=True)
    shutil.copyfile(empty_mlflow_db, mlflow_dir / "mlflow.db")
    assert main(["--params", str(params), "compare", "--out", str(tmp_path / "out")]) == 2
    assert "no runs found: no finished pipeline run in 1 experiment(s)" in capsys.readouterr().err


def test_page_is_self_contained(use_store, tmp_path: Path) -> None:
    _compare(tmp_path)
    text = (tmp_path / "comparison.html").read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count("<img src=\"data:image/png;base64,") == 3  # σ plot + two grids
    assert "champion" in text and "FID ÷ floor" in text and "c0ffee" in text
    assert "ncsn-mnist5k v2 <span class='muted'>(champion: v1)</span>" in text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_page_renders_in_headless_chromium(use_store, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("headless Chromium not installed (Debian/Ubuntu: apt-get install chromium)")
    _compare(tmp_path)
    page = (tmp_path / "comparison.html").read_text()
    # A copy that writes, into the DOM, whether each image decoded (the page itself has no script).
    probe = ("<script>window.addEventListener('load', () => { const p = document.createElement('pre');"
             " p.id = 'probe'; p.textContent = [...document.images].map(i => i.complete + ':' + i.naturalWidth)"
             ".join(' '); document.body.appendChild(p); });</script>")
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    flags = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", "--window-size=1280,2000"]
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", (tmp_path / "probe.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table") == 4 and "FID ÷ floor" in dom
    decoded = dom.split('<pre id="probe">')[1].split("</pre>")[0].split()
    assert len(decoded) == 3 and all(d.startswith("true:") and int(d.split(":")[1]) > 0 for d in decoded), decoded
    shot = tmp_path / "page.png"
    subprocess.run(flags + [f"--screenshot={shot}", (tmp_path / "comparison.html").as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is blank"


def test_a_dvc_exp_run_experiment_is_one_run(tmp_path: Path, empty_mlflow_db: Path, monkeypatch) -> None:
    """Stage runs of `dvc exp run` have no pipeline run above them: their dvc_exp_name groups them."""
    from mlflow import MlflowClient

    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ncsn", artifact_location=(tmp_path / "artifacts").as_uri())
    ids = _pipeline(client, exp, tmp_path, start=T0, dataset="mnist", params={"sigmas": [5.0, 0.5, 0.01]},
                    metrics=CLASSIFIER)
    for stage in STAGES:  # what `dvc exp run` leaves: the same stage runs, no parent, one experiment name
        client.delete_tag(ids[stage], "mlflow.parentRunId")
        client.set_tag(ids[stage], "dvc_exp_name", "exp-mnist")
    client.delete_run(ids["pipeline"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (row,) = _compare(tmp_path / "out")
    assert row["run_id"] == ids["evaluate"] and row["dataset"] == "mnist"
    assert float(row["fid"]) == CLASSIFIER["classifier_fid"]
    assert [float(row[f"wall_s:{s}"]) for s in STAGES] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert float(row["wall_s:total"]) == 20.0  # the sum of its stages
