"""What 16 x 4 rollouts leave in a process: resident memory (anonymous and file-backed) after loading, after the
rollouts and release_weights, after malloc_trim, after dropping the episodes and the engine (glibc mmap
threshold 1 MB, bf16 compute). Used for results/signal-arith.md section 6:

    OMP_NUM_THREADS=1 python scripts/rollout_memory_probe.py
"""
import ctypes, ctypes.util, gc, sys, json
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"); libc.mallopt(-3, 1048576)
def st():
    d = {}
    for l in open('/proc/self/status'):
        for k in ('VmRSS', 'RssAnon', 'RssFile'):
            if l.startswith(k): d[k] = round(int(l.split()[1]) / 1e6, 2)
    return d
import torch
from scorebench import models
from scorebench.bench.train import sample_episodes
from scorebench.engines.hf import HFEngine
model, tok = models.load(None)
model.float()
print('loaded', st(), flush=True)
engine = HFEngine(model=model, tokenizer=tok, batch_size=32)
engine.use_compute_dtype("bfloat16")
eps = sample_episodes(model, tok, 16, 4, max_new_tokens=128, engine=engine)
print('after rollouts', st(), flush=True)
engine.release_weights(); gc.collect()
print('released', st(), flush=True)
libc.malloc_trim(0)
print('trimmed', st(), flush=True)
r = engine._runner
print('runner attrs', {k: type(v).__name__ for k, v in vars(r).items()})
tens = {k: v.numel() * v.element_size() / 1e6 for k, v in vars(r).items() if torch.is_tensor(v)}
print('runner tensors MB', tens)
del eps; gc.collect(); libc.malloc_trim(0)
print('episodes dropped', st(), flush=True)
del engine, r; gc.collect(); libc.malloc_trim(0)
print('engine dropped', st(), flush=True)
