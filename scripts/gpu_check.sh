#!/usr/bin/env bash
# The GPU check, one command on a CUDA machine with the project installed (or on PYTHONPATH):
#   bash scripts/gpu_check.sh [OUT]          (default OUT: results/gpu)
# 1. the GPU tests (pytest -m gpu: greedy engine == generate on CUDA, the CUDA-graph decode == the eager step,
#    a trainer step on CUDA, the recorded GPU);
# 2. scorebench bench --device cuda --quick (our engine vs generate at batch 32 and 256, fp32 and bf16, against
#    the HBM roofline; a whole gpu-small SCoRe step of 64 x 4 episodes: rollouts + training);
# 3. scorebench reproduce --table 4 --task arith-mix --preset gpu-small --device cuda (SCoRe and its ablations);
# 4. headroom: turn-1 accuracy of SCoRe's training rollouts (train problems) step by step, from its run directory.
# Everything lands in OUT/<gpu-name>/ with the versions and each stage's seconds; nothing is written for a GPU
# that was not there. Budget: under 9 minutes on one H100/H200 is the target; each stage has a time limit
# (STAGE_LIMITS, seconds) so one slow stage cannot take the others' results with it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device here')" || exit 1
GPU=$($PY -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")
OUT=${1:-results/gpu}/$GPU
read -r LIM_TESTS LIM_BENCH LIM_TABLE <<< "${STAGE_LIMITS:-150 180 330}"
mkdir -p "$OUT"
{
  echo "gpu: $GPU"; date -u +"date: %Y-%m-%d %H:%M UTC"; echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('transformers', transformers.__version__)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
} > "$OUT/versions.txt"
stage() {  # stage NAME LIMIT CMD...: run with a time limit, record its seconds and exit status
  local name=$1 lim=$2 t0 rc; shift 2
  t0=$(date +%s)
  timeout "$lim" "$@"; rc=$?
  echo "stage $name: $(( $(date +%s) - t0 )) s, exit $rc$([ $rc = 124 ] && echo " (stopped at its ${lim} s limit)")" \
    | tee -a "$OUT/versions.txt"
}
stage gpu-tests "$LIM_TESTS" bash -c "$PY -m pytest -q -m gpu tests/gpu/test_gpu.py > '$OUT/pytest-gpu.txt' 2>&1"
stage bench "$LIM_BENCH" $PY -m scorebench bench --device cuda --quick --out "$OUT/bench.md" 2> "$OUT/bench.log"
stage table4 "$LIM_TABLE" $PY -m scorebench reproduce --table 4 --task arith-mix --preset gpu-small --device cuda \
    --runs-dir "$OUT/runs" --out "$OUT/table4-arith-mix" 2> "$OUT/table4.log"
if [ ! -f "$OUT/table4-arith-mix/table4.md" ]; then  # stopped at its limit: a table of the rows that finished
  done_runs=$(ls -d "$OUT"/runs/*/ 2>/dev/null | while read -r d; do [ -f "$d/metrics.json" ] && echo "$d"; done)
  [ -n "$done_runs" ] && $PY -m scorebench table $done_runs > "$OUT/table4-partial.md" 2>> "$OUT/table4.log"
fi
for run in "$OUT"/runs/score-arith-mix-*; do  # the SCoRe row (the ablations' dirs are named after their methods)
  [ -f "$run/train/rollouts.jsonl" ] && $PY scripts/rollout_summary.py "$run" --every 5 > "$OUT/headroom-$(basename "$run").md"
done
true
