"""``bench/gpu_check.sh --dry-run`` on the CPU: the GPU check is ready to run when a GPU is there.

The dry run prints every command of the four parts (CUDA tests, network benchmark, the paper
profile for 300 steps with samples, DDP over NCCL), checks the script's syntax, the arguments of
every command and the params files it writes, and runs no GPU work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PARTS = {"cuda-tests": "tests/models/test_cuda.py",
         "bench": "bench/bench_networks.py --device cuda --which cifar",
         "paper-train": "paper.yaml train",
         "paper-sample": "sample --n 8",
         "ddp": "torch.distributed.run --standalone --nproc_per_node 1 -m ncsn"}


def test_dry_run_lists_the_four_parts_and_checks_them(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_CHECK_DIR": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "checked on the CPU" in out
    for part, command in PARTS.items():
        line = next((x for x in out.splitlines() if x.startswith(f"== {part}: ")), None)
        assert line is not None and command in line, f"{part}: {line!r}"
    summary = out[out.index("gpu_check summary"):]
    assert all(f"\n{part} " in summary for part in PARTS), summary
    assert (tmp_path / "paper.yaml").is_file() and len(list((tmp_path / "cifar_like").glob("*.png"))) == 600
