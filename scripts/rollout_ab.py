"""Evaluation-shaped rollouts (greedy, two turns, the last train problems, 128-token cap) of two engine settings in
one process: process-CPU seconds of each and whether the episodes are identical token for token.

    # the engine keeping finished samples' K/V for the next call (256 MB) vs not; fp32, 200 problems (~14 min)
    OMP_NUM_THREADS=1 python scripts/rollout_ab.py kept-kv > results/signal-arith/kept-kv-validation.json
    # fp32 weights packed for oneDNN vs F.linear; 64 problems, ABBA (~7 min)
    OMP_NUM_THREADS=1 python scripts/rollout_ab.py fp32-pack > results/signal-arith/fp32-pack-ab.json

(Until 2026-12-03 these were two scripts, ``kept_kv_ab.py`` and ``fp32_pack_ab.py``; the shipped JSONs came from
them, with the same code as each mode here.)
"""
import json
import sys
import time

import torch

from scorebench import models
from scorebench.api.protocol import ProtocolConfig, run_protocol
from scorebench.engines.base import SamplingParams
from scorebench.engines.hf import HFEngine
from scorebench.machine import cpu_model
from scorebench.tasks.arith import Arith

MODES = {  # mode: (problems, [(label, engine kwargs)] in run order)
    "kept-kv": (200, [("keep", {"keep_kv_mb": 256}), ("none", {"keep_kv_mb": 0})]),
    "fp32-pack": (64, [(True, {"pack": True}), (False, {"pack": False}), (False, {"pack": False}),
                       (True, {"pack": True})]),
}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "kept-kv"
    n, runs = MODES[mode]
    torch.set_num_threads(1)
    model, tok = models.load(None)
    task = Arith()
    problems = task.train()[-n:]
    params = SamplingParams(temperature=0, max_new_tokens=128)
    ids, cpu = {}, {}
    for label, kw in runs:
        eng = HFEngine(model=model, tokenizer=tok, batch_size=32, compute_dtype="float32", **kw)
        c = time.process_time()
        eps = run_protocol(eng, task, problems, params, ProtocolConfig(turns=2), progress=False, keep_ids=True)
        cpu.setdefault(label, []).append(time.process_time() - c)
        ids[label] = [[list(t.response_ids) for t in e.turns] for e in eps]
        print(label, round(cpu[label][-1], 1), file=sys.stderr, flush=True)
    a, b = (label for label, _ in runs[:2])
    name = cpu_model()
    print(json.dumps({"mode": mode, "problems": n, "episodes": len(ids[a]),
                      "identical_episodes": sum(x == y for x, y in zip(ids[a], ids[b])),
                      "cpu_s": {str(k): v for k, v in cpu.items()},
                      f"ratio_cpu_{b}_over_{a}": sum(cpu[b]) / len(cpu[b]) / (sum(cpu[a]) / len(cpu[a])),
                      "cpu": name, "threads": 1, "command": f"python scripts/rollout_ab.py {mode}"}, indent=1))


if __name__ == "__main__":
    main()
