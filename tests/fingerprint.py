"""A fingerprint of a finished smoke run: every metric and a hash of every sample.

Used by the end-to-end test to check that the pipeline's results stay bit-identical
(``tests/golden/smoke_<cpu capability>.json``, recorded from an earlier state of the code).
Regenerate a golden file only when a change is meant to alter results:
``NCSN_RECORD_GOLDEN=1 pytest tests/pipeline/test_end_to_end.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ncsn.storage.checkpoint import checkpoint_sigmas

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def golden_path() -> Path:
    """The golden file of this CPU: kernels differ in rounding between AVX2 and AVX-512."""
    return GOLDEN_DIR / f"smoke_{torch.backends.cpu.get_cpu_capability().lower()}.json"


def _tensor_sha256(tensor: torch.Tensor) -> str:
    t = tensor.detach().cpu().contiguous()
    return hashlib.sha256(str(t.dtype).encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


def _numbers(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every number of a nested JSON object by dotted key, wall times left out."""
    out: dict[str, float] = {}
    for key, value in sorted(metrics.items()):
        if isinstance(value, dict):
            out |= _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not any(
                word in prefix + key for word in ("seconds", "time", "timing")):
            out[prefix + key] = value
    return out


def fingerprint(repo: Path) -> dict[str, Any]:
    """Metrics of the classifier, evaluate and figures stages, and SHA-256 of every sample shard,
    of the final weights and of the inpainting results."""
    out = repo / "outputs"
    shards = {}
    for path in sorted((out / "sample" / "shards").glob("shard_*.pt")):
        shard = torch.load(path, map_location="cpu", weights_only=True)
        shards[path.name] = {"images": _tensor_sha256(shard["images"]), "seeds": shard["seeds"].tolist()}
    model = torch.load(out / "train" / "model.pt", map_location="cpu", weights_only=True)
    inpaint = torch.load(out / "inpaint" / "results.pt", map_location="cpu", weights_only=True)
    return {
        "evaluate": _numbers(json.loads((out / "evaluate" / "metrics.json").read_text())),
        "classifier": _numbers(json.loads((out / "classifier" / "metrics.json").read_text())),
        "figures": _numbers(json.loads((out / "figures" / "figures.json").read_text())),
        "sigmas": checkpoint_sigmas(model).tolist(),
        "model": {name: _tensor_sha256(t) for name, t in sorted(model["model"].items())},
        "ema": {name: _tensor_sha256(t) for name, t in sorted((model["ema"] or {}).items())},
        "shards": shards,
        "inpaint": {name: _tensor_sha256(t) for name, t in sorted(inpaint.items())},
    }
