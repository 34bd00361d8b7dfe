"""Peak resident memory of a 16 x 4-sized trainer step by sub-phase (forward, backward, clipping, optimizer),
on synthetic sequences (no engine, so nothing of the rollouts is in it), two steps, glibc mmap threshold 1 MB;
--gc: gradient checkpointing. Prints one JSON line. Used for results/signal-arith.md section 6:

    OMP_NUM_THREADS=1 python scripts/trainer_memory_probe.py --gc
"""
import sys, tempfile, threading, time, json, random
from scorebench.device import set_mmap_threshold
from scorebench.machine import rss_gb as rss
gc_on = "--gc" in sys.argv
set_mmap_threshold(1048576)
phase, peaks = ["start"], {}
def sample():
    while True:
        r, p = rss(), phase[0]; peaks[p] = max(peaks.get(p, 0.0), r); time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
import torch
from scorebench import models
from scorebench.training import TrainConfig, Trainer, Sequence
model, tok = models.load(None)
cfg = TrainConfig(lr=1e-6, batch_size=70, micro_batch_size=4, dtype="auto", loss_normalization="sequences",
                  kl_estimator="full", gradient_checkpointing=gc_on)
tr = Trainer(model, tok, cfg, tempfile.mkdtemp(), temperature=0.7)
rng = random.Random(0)
batch = []
for i in range(70):
    L = rng.randint(150, 330); p = rng.randint(60, 90)
    ids = [rng.randrange(1000, 40000) for _ in range(L)]
    w = [0.0] * p + [0.5] * (L - p); k = [0.0] * p + [0.1] * (L - p)
    batch.append(Sequence(ids, w, k))
time.sleep(0.3)
def wrap(obj, name, label):
    f = getattr(obj, name)
    def g(*a, **kw):
        prev = phase[0]; phase[0] = label
        try: return f(*a, **kw)
        finally: time.sleep(0.1); phase[0] = prev
    setattr(obj, name, g)
wrap(tr, "loss", "forward")
wrap(tr.accelerator, "backward", "backward")
wrap(tr.accelerator, "clip_grad_norm_", "clip")
wrap(tr.optimizer, "step", "optimizer")
out = {}
for i in range(2):
    phase[0] = f"idle_{i}"; time.sleep(0.3)
    t = time.process_time(); tr.step(batch); out[f"cpu_{i}"] = time.process_time() - t
    for k in list(peaks):
        if k in ("forward", "backward", "clip", "optimizer"): out[f"{k}_{i}"] = round(peaks.pop(k), 2)
    phase[0] = f"after_{i}"; time.sleep(0.3)
out.update({k: round(v, 2) for k, v in peaks.items()}); out["gc"] = gc_on
out["tokens"] = sum(len(s.input_ids) for s in batch)
print(json.dumps(out))
