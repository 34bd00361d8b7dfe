#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine with the project installed (or on PYTHONPATH):
#   bash scripts/gpu_check.sh [OUT]          (default OUT: results/gpu)
# 1. the GPU tests (pytest -m gpu: greedy engine == generate on CUDA, a trainer step on CUDA, the recorded GPU);
# 2. scorebench bench --device cuda (sampling vs generate, the HBM roofline, the training step);
# 3. scorebench reproduce --table 4 --preset gpu-small --device cuda (SCoRe and its ablations on arith-mix).
# Everything lands in OUT/<gpu-name>/ with the versions; nothing is written for a GPU that was not there.
# Budget: under 9 minutes on one H100 is the target (the GPU tests ~1 min, bench ~2, Table 4 five rows).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')"
GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
OUT=${1:-results/gpu}/$GPU
mkdir -p "$OUT"
{
  echo "gpu: $GPU"; date -u +"date: %Y-%m-%d %H:%M UTC"; echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('transformers', transformers.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} > "$OUT/versions.txt"
t0=$(date +%s)
$PY -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/pytest-gpu.txt"
t1=$(date +%s)
$PY -m scorebench bench --device cuda --quick --out "$OUT/bench.md" 2>"$OUT/bench.log"
t2=$(date +%s)
$PY -m scorebench reproduce --table 4 --preset gpu-small --device cuda --runs-dir "$OUT/runs" \
    --out "$OUT/table4-arith-mix" 2>"$OUT/table4.log"
t3=$(date +%s)
printf 'seconds: gpu tests %s, bench %s, table 4 %s, total %s\n' $((t1-t0)) $((t2-t1)) $((t3-t2)) $((t3-t0)) \
  | tee -a "$OUT/versions.txt"
