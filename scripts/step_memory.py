"""Where a SCoRe step's memory goes: peak resident memory by phase of two consecutive steps (rollouts, trainer
step, after it) at this checkout's defaults, read by a thread from /proc/self/status every 0.2 s. Two steps
because the optimizer's state appears in the first and the second shows what a long run holds.

    OMP_NUM_THREADS=1 python scripts/step_memory.py --problems 16 --samples 4 --out step-memory.json
    OMP_NUM_THREADS=1 python scripts/step_memory.py --mmap-threshold 1048576 --out step-memory-mmap1m.json
    OMP_NUM_THREADS=1 python scripts/step_memory.py --mmap-threshold 1048576 --gradient-checkpointing --out ...
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--mmap-threshold", type=int, default=0,
                    help="bytes: fix glibc's mmap threshold (large tensors mapped and returned on free: less "
                         "fragmentation, more page faults); 0 leaves glibc's default")
    ap.add_argument("--validate", type=int, default=0,
                    help="after the steps, a validation point as a cpu-learn run makes one: N arith train problems, "
                         "greedy, two turns, the engine switched to fp32 and back (0: none)")
    ap.add_argument("--trim", action="store_true",
                    help="malloc_trim(0) after each phase: hand freed heap pages back to the OS")
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="TrainConfig.gradient_checkpointing: keep each decoder layer's input only, recompute the "
                         "rest in backward")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from scorebench.device import set_mmap_threshold, trim_heap
    from scorebench.machine import rss_gb
    if a.mmap_threshold:
        assert set_mmap_threshold(a.mmap_threshold), "mallopt refused"
    phase, peaks = ["start"], {}

    def sample():
        while True:
            r, p = rss_gb() or 0.0, phase[0]
            peaks[p] = max(peaks.get(p, 0.0), r)
            time.sleep(0.2)
    threading.Thread(target=sample, daemon=True).start()
    from scorebench import models
    from scorebench.bench.train import sample_episodes, score_sequences
    from scorebench.engines.hf import HFEngine
    from scorebench.training import TrainConfig, Trainer
    phase[0] = "load"
    model, tok = models.load(None)
    steps = []
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(lr=1e-6, batch_size=a.problems * a.samples * 2, micro_batch_size=a.micro, dtype="auto",
                          loss_normalization="sequences", kl_estimator="full",
                          gradient_checkpointing=a.gradient_checkpointing)
        tr = Trainer(model, tok, cfg, d, temperature=0.7)
        engine = HFEngine(model=tr.model, tokenizer=tok, batch_size=32)
        engine.use_compute_dtype(cfg.resolved_dtype("cpu"))  # one precision, as the RL loop does
        def end_phase():
            if a.trim:
                trim_heap()
            time.sleep(0.5)
        for i in range(2):
            phase[0] = f"rollouts_{i}"
            eps = sample_episodes(tr.model, tok, a.problems, a.samples, max_new_tokens=128, engine=engine)
            seqs = score_sequences(tok, eps)
            engine.release_weights()
            end_phase()
            phase[0] = f"trainer_step_{i}"
            t = time.process_time()
            tr.step(seqs)
            steps.append({"tokens": sum(len(s.input_ids) for s in seqs), "sequences": len(seqs),
                          "trainer_cpu_s": time.process_time() - t})
            phase[0] = f"after_step_{i}"
            end_phase()
        if a.validate:
            from types import SimpleNamespace
            from scorebench.tasks.arith import Arith
            from scorebench.training import validation
            phase[0] = "validation"
            task = Arith()
            t = time.process_time()
            point = validation.evaluate(SimpleNamespace(engine=engine, task=task),
                                        validation.training_split(task.train())[1][:a.validate], 128)
            steps.append({"validation": point, "validation_cpu_s": time.process_time() - t})
            phase[0] = "after_validation"
            end_phase()
    from scorebench.machine import describe
    from scorebench.rundir import git_commit
    out = {"peak_rss_gb_by_phase": {k: round(v, 2) for k, v in peaks.items()}, "steps": steps,
           "problems": a.problems, "samples": a.samples, "micro_batch_size": a.micro,
           "mmap_threshold": a.mmap_threshold or None,
           "trim": a.trim, "gradient_checkpointing": a.gradient_checkpointing, "validate": a.validate, "dtype": cfg.resolved_dtype("cpu"),
           "machine": describe(), "commit": git_commit(),
           "command": "python " + " ".join(["scripts/step_memory.py", *sys.argv[1:]])}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
