"""Does `torch.compile` speed up the CPU trainer step? (results/signal-arith.md §6)

A 16-sequence trainer step (150-330 tokens each, micro-batches of 4, bf16 autocast as `auto` picks on a CPU with
fast bf16, no reference model) on synthetic token ids, eager against each decoder layer wrapped in
`torch.compile(dynamic=True)` (lengths vary from micro-batch to micro-batch), each in its own process, ABBA;
4 steps per process, the first of which pays for compilation. Prints and writes one JSON object.

    OMP_NUM_THREADS=1 python scripts/compile_probe.py --out results/signal-arith/compile-probe.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def one(mode: str) -> list[list[float]]:
    import random
    import tempfile
    import time

    import torch
    from scorebench import models
    from scorebench.training import Sequence, TrainConfig, Trainer
    from scorebench.training import config as tconfig
    tconfig.cpu_bf16_fast = lambda: True
    model, tok = models.load(None)
    if mode == "compile":
        for i, layer in enumerate(model.model.layers):
            model.model.layers[i] = torch.compile(layer, dynamic=True)
    cfg = TrainConfig(lr=1e-6, batch_size=16, micro_batch_size=4, dtype="auto", loss_normalization="sequences")
    tr = Trainer(model, tok, cfg, tempfile.mkdtemp(), temperature=0.7, ref_model=False)
    rng = random.Random(0)  # the same batches in both modes
    out = []
    for _ in range(4):
        batch = []
        for _ in range(16):
            n, p = rng.randint(150, 330), rng.randint(60, 90)
            batch.append(Sequence([rng.randrange(1000, 40000) for _ in range(n)], [0.0] * p + [0.5] * (n - p),
                                  [0.0] * n))
        t, c = time.time(), time.process_time()
        tr.step(batch)
        out.append([round(time.time() - t, 2), round(time.process_time() - c, 2)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", choices=["eager", "compile"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    from scorebench.machine import describe
    from scorebench.rundir import git_commit
    runs = []
    for mode in ("eager", "compile", "compile", "eager"):
        p = subprocess.run([sys.executable, __file__, "--one", mode], capture_output=True, text=True, check=True)
        steps = json.loads(p.stdout.strip().splitlines()[-1])
        runs.append({"mode": mode, "steps_wall_cpu_s": steps})
        print(mode, steps, flush=True)

    def steady(mode):  # steps 2-4 of both processes of a mode: compilation done
        return statistics.median(s[1] for r in runs if r["mode"] == mode for s in r["steps_wall_cpu_s"][1:])
    out = {"runs": runs, "median_steady_cpu_s": {m: steady(m) for m in ("eager", "compile")},
           "speedup_cpu": round(steady("eager") / steady("compile"), 3), "machine": describe(),
           "git_commit": git_commit(),
           "command": "OMP_NUM_THREADS=1 python scripts/compile_probe.py" + (f" --out {a.out}" if a.out else "")}
    print(json.dumps({k: out[k] for k in ("median_steady_cpu_s", "speedup_cpu")}))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
