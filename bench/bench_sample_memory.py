"""Peak memory of the sample stage against the number of samples.

Usage: ``python bench/bench_sample_memory.py [--n 256 4096] [--workdir DIR]``

Prepares the bundled digits and trains the ``smoke`` model once into ``--workdir`` (a
temporary folder by default), then for every ``--n`` runs ``python -m ncsn --params P
sample --n N --out OUT`` in a fresh process and reads that process's peak resident set
size (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a one-child wrapper, so each
figure belongs to one run). The sample stage streams ``sample.batch_size`` samples per
shard to disk, so the peak should not grow with N.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import write_params  # noqa: E402

_CHILD = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


def _ncsn(params: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ncsn", "--params", str(params), *args]


def peak_rss_mib(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of ``cmd`` run alone in a fresh wrapper process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, *cmd], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024, wall  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--workdir", default=None, help="keep the smoke model and samples here (default: temporary)")
    parser.add_argument("--batch-size", type=int, default=64, help="sample.batch_size (samples per shard)")
    parser.add_argument("--steps", type=int, default=1, help="sample.n_steps_each")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ncsn-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    params = write_params(work, {"sample": {"batch_size": args.batch_size, "n_steps_each": args.steps}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if not (work / "outputs" / "train" / "model.pt").is_file():
        for stage in ("prepare", "train"):
            subprocess.run(_ncsn(params, stage), cwd=REPO, env=env, check=True, capture_output=True)

    print(f"sample stage, smoke model, sample.batch_size {args.batch_size}, n_steps_each {args.steps};"
          f" peak RSS of a fresh process")
    print(f"{'n samples':>10} {'peak RSS MiB':>13} {'wall s':>8}")
    for n in args.n:
        rss, wall = peak_rss_mib(_ncsn(params, "sample", "--n", str(n), "--out", str(work / f"sample_{n}")), env)
        print(f"{n:>10} {rss:>13.1f} {wall:>8.1f}")


if __name__ == "__main__":
    main()
