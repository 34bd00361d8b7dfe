"""What 16 x 4 rollouts leave in a process: resident memory (anonymous and file-backed) after loading, after the
rollouts and release_weights, after malloc_trim, after dropping the episodes and the engine (glibc mmap
threshold 1 MB, bf16 compute). Used for results/signal-arith.md section 6:

    OMP_NUM_THREADS=1 python scripts/rollout_memory_probe.py
"""
import gc
from scorebench.device import set_mmap_threshold, trim_heap
from scorebench.machine import proc_field
set_mmap_threshold(1048576)
def st():
    return {k: round(proc_field("/proc/self/status", k + ":") / 1e6, 2) for k in ("VmRSS", "RssAnon", "RssFile")}
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
trim_heap()
print('trimmed', st(), flush=True)
r = engine._runner
print('runner attrs', {k: type(v).__name__ for k, v in vars(r).items()})
tens = {k: v.numel() * v.element_size() / 1e6 for k, v in vars(r).items() if torch.is_tensor(v)}
print('runner tensors MB', tens)
del eps; gc.collect(); trim_heap()
print('episodes dropped', st(), flush=True)
del engine, r; gc.collect(); trim_heap()
print('engine dropped', st(), flush=True)
