"""Validation-shaped rollouts (fp32, greedy, two turns, 200 train problems, 128-token cap) with and without the
engine keeping finished samples' K/V for the next call: process CPU seconds of each, and whether the episodes are
identical token for token (they must be: the kept K/V encode exactly the tokens the second turn extends).

    OMP_NUM_THREADS=1 python scripts/kept_kv_ab.py > results/signal-arith/kept-kv-validation.json   # ~14 min, 1 core
"""
import json, time, torch, sys
from scorebench import models
from scorebench.engines.hf import HFEngine
from scorebench.engines.base import SamplingParams
from scorebench.api.protocol import run_protocol, ProtocolConfig
from scorebench.tasks.arith import Arith
torch.set_num_threads(1)
model, tok = models.load(None)
task = Arith()
probs = task.train()[-200:]
params = SamplingParams(temperature=0, max_new_tokens=128)
out = {}
for name, mb in (("keep", 256), ("none", 0)):
    eng = HFEngine(model=model, tokenizer=tok, batch_size=32, keep_kv_mb=mb)
    c, w = time.process_time(), time.perf_counter()
    eps = run_protocol(eng, task, probs, params, ProtocolConfig(turns=2), progress=False, keep_ids=True)
    out[name] = {"cpu_s": time.process_time() - c, "wall_s": time.perf_counter() - w,
                 "ids": [[list(t.response_ids) for t in e.turns] for e in eps]}
    print(name, round(out[name]["cpu_s"], 1), round(out[name]["wall_s"], 1), file=sys.stderr, flush=True)
same = sum(a == b for a, b in zip(out["keep"]["ids"], out["none"]["ids"]))
print(json.dumps({"episodes": len(out["keep"]["ids"]), "identical_episodes": same,
                  "cpu_s": {k: v["cpu_s"] for k, v in out.items()}, "wall_s": {k: v["wall_s"] for k, v in out.items()},
                  "compute_dtype": eng.compute_dtype}))
