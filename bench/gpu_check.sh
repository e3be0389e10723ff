#!/usr/bin/env bash
# GPU check: everything that needs a GPU, in at most 8 minutes on one GPU, then one summary table.
#
#   bash bench/gpu_check.sh             # on a machine with CUDA GPUs (repository root or anywhere)
#   bash bench/gpu_check.sh --dry-run   # on any machine: print every command, check their syntax
#                                       # and arguments on the CPU (bash -n, --help, params files)
#
# Parts (each under its own time limit, all under one 8-minute deadline):
#   a. cuda-tests  the CUDA tests (tests/models/test_cuda.py: fused CondIN++, RefineNet forward and
#                  training step, the U-Net's training step (plain GroupNorm + SiLU on the GPU, fused on
#                  the CPU), Algorithm 1 and its seeds, on the GPU against the CPU)
#   b. bench       bench/bench_networks.py on cuda, CIFAR network: the reference port (baseline)
#                  against ncsn's network, float32 and bf16 autocast, and the fraction of peak
#                  (PEAK_TFLOPS, else taken from the GPU's name); torch.compile, whose first call
#                  takes minutes for this network, is left to a run by hand (--variants compile)
#   c. paper       the `paper` profile (RefineNet ngf 128) for 300 steps on CIFAR-shaped data
#                  (3x32x32 images written by this script), then 8 samples with Algorithm 1
#   d. ddp         torchrun --nproc_per_node <GPUs present>: DDP training with NCCL, 50 steps
#
# Environment: PYTHON (default .venv/bin/python), GPU_CHECK_DIR (work folder, default a new
# temporary one; logs of each part are kept there), PEAK_TFLOPS (bf16 dense peak of one GPU).
set -uo pipefail

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
WORK=${GPU_CHECK_DIR:-$(mktemp -d -t ncsn-gpu-check.XXXXXX)}
mkdir -p "$WORK"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
DEADLINE=$((SECONDS + 470))  # 8 minutes, less a margin for the summary
ROWS=()

if [ "$DRY" = 1 ]; then
  NGPU=${NGPU:-1}
else
  NGPU=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
  if [ "$NGPU" -lt 1 ] || ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: no CUDA GPU visible to $PY (nvidia-smi lists $NGPU); use --dry-run on a CPU machine" >&2
    exit 2
  fi
fi

peak_tflops() {  # bf16 dense peak of one GPU, by name (override with PEAK_TFLOPS)
  if [ -n "${PEAK_TFLOPS:-}" ]; then echo "$PEAK_TFLOPS"; return; fi
  local name
  name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  case "$name" in
    *H100*|*H200*|*H800*|*GH200*) echo 989 ;;
    *B200*) echo 2250 ;;
    *A100*|*A800*) echo 312 ;;
    *L40S*) echo 362 ;;
    *L40*|*"RTX 6000 Ada"*) echo 181 ;;
    *A10G*|*A10*) echo 125 ;;
    *L4*) echo 121 ;;
    *) echo "" ;;
  esac
}

# part NAME LIMIT_S FIGURE_CMD -- COMMAND...: run COMMAND (dry run: print it), log to WORK/NAME.log,
# then FIGURE_CMD (a shell snippet reading the log on stdin) gives the summary figure.
part() {
  local name=$1 limit=$2 figure=$3
  shift 4
  echo "== $name: $*"
  if [ "$DRY" = 1 ]; then
    ROWS+=("$name|dry-run|0|$(printf '%q ' "$@" | cut -c1-60)...")
    return
  fi
  local left=$((DEADLINE - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 5 ]; then
    ROWS+=("$name|skipped|0|no time left of the 8 minutes")
    return
  fi
  local start=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  local status=ok
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="timeout (${limit}s)"
  [ "$rc" != 0 ] && [ "$status" = ok ] && status="FAILED ($rc)"
  tail -n 5 "$WORK/$name.log"
  ROWS+=("$name|$status|$((SECONDS - start))|$(bash -c "$figure" <"$WORK/$name.log" 2>/dev/null | tr '\n|' '; ' | cut -c1-90)")
}

# ------------------------------------------------------------------ inputs (CPU only, also in a dry run)
# 600 CIFAR-shaped (3x32x32) PNG images (smooth random colour fields), and two params files for
# them: the paper profile on cuda, 300 steps (paper.yaml) and 50 DDP steps (ddp.yaml), validated.
DATA=$WORK/cifar_like
"$PY" - "$WORK" "$DATA" <<'EOF' || exit 2
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ncsn.config import load_config
from ncsn.config.composition import compose_params

work, data = Path(sys.argv[1]), Path(sys.argv[2])
data.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i in range(600):
    image = np.kron(rng.uniform(0, 255, size=(4, 4, 3)), np.ones((8, 8, 1))) + rng.normal(0, 12, size=(32, 32, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(data / f"{i:04d}.png")
for name, n_iters in (("paper", 300), ("ddp", 50)):
    params = compose_params(["profile=paper", "dataset=folder"])  # as `-S profile=paper -S dataset=folder`
    params["base"].update(dataset="folder", device="cuda")
    params["data"].update(folder=str(data), image_size=32, channels=3, n_test=64, download=False)
    params["train"].update(n_iters=n_iters, val_freq=100, val_size=64, log_freq=50)
    params["tracking"]["enabled"] = False
    params["paths"] = {key: str(work / name / key) for key in params["paths"]}
    params["paths"]["prepare"] = str(work / "paper" / "prepare")  # DDP trains on the data paper-prepare writes
    (work / f"{name}.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load_config(work / f"{name}.yaml")  # a bad key or value stops the check before any GPU work
EOF

# ------------------------------------------------------------------ dry run: syntax and arguments
if [ "$DRY" = 1 ]; then
  bash -n "${BASH_SOURCE[0]}" || exit 1
  "$PY" bench/bench_networks.py --help >/dev/null || { echo "gpu_check: bench_networks.py --help failed" >&2; exit 1; }
  "$PY" - "$WORK" <<'EOF' || { echo "gpu_check: the ncsn or torchrun arguments do not parse" >&2; exit 1; }
import sys

from torch.distributed.run import get_args_parser

from ncsn.cli import build_parser

work = sys.argv[1]
parser = build_parser()
for stage in ("prepare", "train"):
    parser.parse_args(["--params", f"{work}/paper.yaml", stage])
parser.parse_args(["--params", f"{work}/paper.yaml", "sample", "--n", "8", "--out", f"{work}/paper/samples"])
get_args_parser().parse_args(["--standalone", "--nproc_per_node", "1", "-m", "ncsn", "--params", f"{work}/ddp.yaml",
                              "train"])
EOF
  "$PY" -m pytest -q -p no:cacheprovider --collect-only tests/models/test_cuda.py >/dev/null \
    || { echo "gpu_check: tests/models/test_cuda.py does not collect" >&2; exit 1; }
  echo "gpu_check: syntax, the arguments of every command and both params files checked on the CPU"
fi

# ------------------------------------------------------------------ the four parts
PEAK=$(peak_tflops)
PEAK_ARGS=()
[ -n "$PEAK" ] && PEAK_ARGS=(--peak-tflops "$PEAK")

part cuda-tests 60 "grep -E '(passed|failed|skipped|error)' | tail -n 1" -- \
  "$PY" -m pytest -q -p no:cacheprovider tests/models/test_cuda.py

part bench 120 "grep -E '^(fast|bf16) ' | awk '{print \$0}' | tr -s ' ' | tail -n 2" -- \
  "$PY" bench/bench_networks.py --device cuda --which cifar --batch 128 --variants baseline fast bf16 \
  --modes forward train --repeats 5 "${PEAK_ARGS[@]}"

part paper-prepare 40 "tail -n 1" -- "$PY" -m ncsn --params "$WORK/paper.yaml" prepare

part paper-train 150 "grep -iE 'step|loss' | tail -n 1" -- "$PY" -m ncsn --params "$WORK/paper.yaml" train

part paper-sample 120 "tail -n 1" -- "$PY" -m ncsn --params "$WORK/paper.yaml" sample --n 8 --out "$WORK/paper/samples"

part ddp 90 "grep -iE 'step|loss' | tail -n 1" -- \
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m ncsn --params "$WORK/ddp.yaml" train

# ------------------------------------------------------------------ summary
echo
echo "gpu_check summary ($([ "$DRY" = 1 ] && echo dry run || nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $NGPU GPU(s), peak ${PEAK:-unknown} TFLOP/s, logs in $WORK)"
printf '%-14s %-16s %6s  %s\n' part status seconds figure
failed=0
for row in "${ROWS[@]}"; do
  IFS='|' read -r name status secs figure <<<"$row"
  printf '%-14s %-16s %6s  %s\n' "$name" "$status" "$secs" "$figure"
  case "$status" in ok|dry-run) ;; *) failed=1 ;; esac
done
exit "$failed"
