"""Where inside a trainer step the C heap grows: two steps on the same SCoRe sequences, and per phase (the shared
prompts' forward, each micro-batch's forward and backward, the prompts' backward, the optimizer step) the highest
resident size and glibc's ``mallinfo2`` figures a thread read every 5 ms: ``arena`` (the heap's extent), ``used``
(what is allocated in it) and ``mapped`` (allocations glibc mapped on their own). What the heap holds beyond
``used`` is free memory the process still counts as resident until it is trimmed.

    # this checkout, and the same with the trainer's heap trims switched off (training/memory.py)
    OMP_NUM_THREADS=1 python scripts/heap_phases.py --out heap-phases.json
    OMP_NUM_THREADS=1 python scripts/heap_phases.py --no-trim --out heap-phases-no-trim.json

The sequences (16 problems x 4 samples, 128 new tokens, bf16 rollouts of the embedded model) are sampled once and
kept in ``--sequences`` so that runs compare the same work; ``--rollouts RUN/train/rollouts.jsonl --step 2`` takes
a run's own step instead (a short cpu-learn run's first Stage-II step), and ``--micro-batch-size`` /
``--micro-batch-tokens`` set how the step is cut. glibc only (``mallinfo2``: glibc 2.33 or later).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import phase_memory  # scripts/: python puts the script's own folder on the path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sequences", default=os.path.join(tempfile.gettempdir(), "scorebench-seqs-16x4.pkl"))
    ap.add_argument("--rollouts", help="a run's train/rollouts.jsonl: the sequences of its step --step instead")
    ap.add_argument("--step", type=int, default=2, help="with --rollouts: which step (a short run's first Stage II)")
    ap.add_argument("--no-trim", action="store_true", help="the trainer's heap trims switched off")
    ap.add_argument("--micro-batch-size", type=int, default=4, help="sequences per micro-batch (the study's cut)")
    ap.add_argument("--micro-batch-tokens", type=int, default=None,
                    help="padded tokens per micro-batch instead (cpu-learn's: 768)")
    a = ap.parse_args()
    phase, rows, order = phase_memory.start("heap_phases.py")
    from scorebench import models
    from scorebench.device import trim_heap
    from scorebench.machine import describe
    from scorebench.rundir import git_commit
    from scorebench.training import TrainConfig, Trainer, memory
    model, tok = models.load(None)
    cfg = TrainConfig(lr=1e-6, batch_size=128, micro_batch_size=a.micro_batch_size,
                      micro_batch_tokens=a.micro_batch_tokens, dtype="auto", loss_normalization="sequences",
                      kl_estimator="full")
    tr = Trainer(model, tok, cfg, tempfile.mkdtemp(), temperature=0.7)
    if a.rollouts:  # a run's own step: its episodes re-tokenized from their text (the run kept no ids)
        from scorebench.api.types import Episode
        from scorebench.bench.train import score_sequences
        records = [json.loads(x) for x in Path(a.rollouts).read_text().splitlines() if x.strip()]
        seqs = score_sequences(tok, [Episode.from_json(d) for d in records if d["step"] == a.step])
        if not seqs:
            sys.exit(f"{a.rollouts}: no episodes of step {a.step}")
    elif os.path.exists(a.sequences):
        seqs = pickle.loads(Path(a.sequences).read_bytes())
    else:
        from scorebench.bench.train import sample_episodes, score_sequences
        from scorebench.engines.hf import HFEngine
        engine = HFEngine(model=tr.model, tokenizer=tok, batch_size=32)
        engine.use_compute_dtype(cfg.resolved_dtype("cpu"))
        seqs = score_sequences(tok, sample_episodes(tr.model, tok, 16, 4, max_new_tokens=128, engine=engine))
        engine.release_weights()
        Path(a.sequences).write_bytes(pickle.dumps(seqs))
    if a.no_trim:
        memory.trim_heap = lambda: False
    step, mb = [0], [0]
    loss, shared_prompts, opt_step = tr.loss, tr.shared_prompts, tr.optimizer.step

    def label(name):
        phase[0] = f"step {step[0]} {name}"

    def traced_loss(*args, **kw):
        label(f"micro-batch {mb[0]:02d} forward")
        out = loss(*args, **kw)
        label(f"micro-batch {mb[0]:02d} backward")
        mb[0] += 1
        return out

    def traced_prompts(*args, **kw):
        label("prompts forward")
        shared = shared_prompts(*args, **kw)
        if shared is not None:
            backward = shared.backward
            shared.backward = lambda: (label("prompts backward"), backward())[1]
        return shared
    tr.loss, tr.shared_prompts = traced_loss, traced_prompts
    tr.optimizer.step = lambda *args, **kw: (label("optimizer"), opt_step(*args, **kw))[1]
    cpu = []
    for step[0] in range(2):
        trim_heap()  # as the RL loop does between phases
        mb[0] = 0
        t = time.process_time()
        tr.step(seqs)
        cpu.append(round(time.process_time() - t, 1))
        label("after")
        time.sleep(0.05)
    time.sleep(0.05)
    steps = {s: max(rows[p]["rss_gb"] for p in order if p.startswith(f"step {s} ")) for s in range(2)}
    out = {"peak_rss_gb_by_step": steps, "trainer_cpu_s": cpu, "trim": not a.no_trim,
           "micro_batch_size": a.micro_batch_size, "micro_batch_tokens": a.micro_batch_tokens,
           "phases": {p: rows[p] for p in order}, "sequences": len(seqs), "tokens": sum(len(s.input_ids) for s in seqs),
           "rollouts": a.rollouts and f"{a.rollouts} step {a.step}",
           "machine": describe(), "commit": git_commit(), "command": "python " + " ".join(sys.argv)}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("peak_rss_gb_by_step", "trainer_cpu_s", "trim")}))


if __name__ == "__main__":
    main()
