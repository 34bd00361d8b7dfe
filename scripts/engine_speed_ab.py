"""The fast engine's CPU speed from one source tree, on a fixed workload (the bench's turn-2 prompts, greedy, 48 new
tokens, batch 8 and 32, 2 threads), to compare two commits with the same workload (sampling would change it: other
streams, other lengths). Prints one JSON line: per batch [generated tokens, seconds, tokens/s].

    git worktree add /tmp/before <commit>
    for t in /tmp/before . /tmp/before .; do python scripts/engine_speed_ab.py $t; done   # alternate: noisy machines
"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(2)
from scorebench import models
from scorebench.bench import two_turn_conversations
from scorebench.engines.base import SamplingParams
from scorebench.engines.hf import HFEngine
m, tok = models.load(None)
res = {"tree": sys.argv[1]}
for b in (8, 32):
    e = HFEngine(model=m, tokenizer=tok, batch_size=b)
    e.refresh()
    convs = two_turn_conversations(2 * b)
    p = SamplingParams(temperature=0.0, max_new_tokens=48, seed=1)
    t = time.perf_counter()
    outs = e.generate(convs, p, desc="ab")
    w = time.perf_counter() - t
    n = sum(len(c.token_ids) for cs in outs for c in cs)
    res[f"b{b}"] = [n, round(w, 2), round(n / w, 1)]
print(json.dumps(res), flush=True)
