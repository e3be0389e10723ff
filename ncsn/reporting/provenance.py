"""Whether each section of the report shows this run's outputs, and a line where it does not.

A stage's folder can hold the files of an earlier run: another dataset's figures, samples of
a model trained since, metrics of another model. The report checks what the stages record:

* ``train/model.pt``: the dataset it was trained on (``data.dataset``);
* ``sample/shards/manifest.json``: the SHA-256 of the ``model.pt`` that drew the samples;
* ``evaluate/metrics.json``: the dataset and the ``model.pt`` SHA-256 it evaluated;
* ``figures/figures.json``: the dataset of Figure 2 (Figures 1 and 3 use the 2-D mixture).

Files that record nothing (written by older versions) are not questioned.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ncsn.config import Config
from ncsn.storage.checkpoint import CheckpointError, file_sha256, final_model_path, load_checkpoint
from ncsn.storage.shards import read_manifest


def _differs(recorded: Any, expected: Any) -> bool:
    return recorded is not None and expected is not None and recorded != expected


def section_warnings(cfg: Config, metrics: dict[str, Any] | None, figures: dict[str, Any] | None) -> dict[str, list[str]]:
    """Section id -> the lines that say which of its inputs come from another dataset or run.

    :param metrics: the evaluate stage's ``metrics.json`` (None when absent).
    :param figures: the figures stage's ``figures.json`` (None when absent).
    """
    dataset, model = cfg.base.dataset, final_model_path(cfg)
    sha = file_sha256(model) if model.is_file() else None
    out: dict[str, list[str]] = defaultdict(list)
    if model.is_file():
        try:
            trained_on = (load_checkpoint(model).get("data") or {}).get("dataset")
        except CheckpointError:
            trained_on = None
        if _differs(trained_on, dataset):
            out["training"].append(f"{model} was trained on {trained_on}, not on this run's dataset {dataset}:"
                                   " rerun dvc repro train")
    manifest = read_manifest(Path(cfg.paths.sample) / "shards") or {}
    if _differs(manifest.get("model_sha256"), sha):
        line = f"these samples were drawn by another model than {model} (an earlier run): rerun dvc repro sample"
        out["samples"].append(line)
        out["figures"].append(f"Figure 4: {line}")
    metrics = metrics or {}
    evaluated = []
    if _differs(metrics.get("dataset"), dataset):
        evaluated.append(f"these metrics were measured on {metrics['dataset']}, not on this run's dataset {dataset}")
    elif _differs(metrics.get("model_sha256"), sha):
        evaluated.append(f"these metrics were measured for another model than {model} (an earlier run)")
    for line in evaluated:
        for section in ("metrics", "checkpoints"):
            out[section].append(f"{line}: rerun dvc repro evaluate")
        out["figures"].append(f"Figure 6 (nearest neighbours): {line}: rerun dvc repro evaluate")
    fig2 = (figures or {}).get("fig2_ssm_noise")
    if isinstance(fig2, dict) and _differs(fig2.get("dataset"), dataset):
        out["figures"].append(f"Figure 2 was drawn on {fig2['dataset']}, not on this run's dataset {dataset}:"
                              " rerun dvc repro figures")
    return dict(out)
