"""A whole SCoRe step (rollouts + trainer step) in fp32 against bf16 on this CPU, each variant in its own process
(so each reports its own peak resident memory), in ABBA order, split into rollouts / policy forward-backward /
reference forward. One precision: each variant samples its rollouts in the dtype its trainer computes in, as the
RL loop does.

    python scripts/step_ab.py --out results/signal-arith/step-ab.json   # ~10 min on one core of a 2-core EPYC
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(dtype: str, problems: int, samples: int, micro: int) -> dict:
    import torch

    from scorebench import models
    from scorebench.bench.train import sample_episodes, score_sequences
    from scorebench.engines.hf import HFEngine
    from scorebench.training import TrainConfig, Trainer
    model, tok = models.load(None)
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(lr=1e-6, batch_size=problems * samples * 2, micro_batch_size=micro, dtype=dtype,
                          loss_normalization="sequences", kl_estimator="full")
        tr = Trainer(model, tok, cfg, d, temperature=0.7)
        engine = HFEngine(model=tr.model, tokenizer=tok, batch_size=32)
        engine.use_compute_dtype(dtype)
        t = time.perf_counter()
        eps = sample_episodes(tr.model, tok, problems, samples, max_new_tokens=128, engine=engine)
        rollout_s = time.perf_counter() - t
        seqs = score_sequences(tok, eps)
        t = time.perf_counter()
        tr.step(seqs)
        step_s = time.perf_counter() - t
        t = time.perf_counter()  # the reference's share: its forward on the same micro-batches, alone
        for mb in tr.micro_batches(seqs):
            ids, mask, w, k = tr._collate(mb)
            rows, cols = (k != 0).nonzero(as_tuple=True)
            tr._ref_logits_at(ids, mask, rows, cols)
        ref_s = time.perf_counter() - t
    return {"dtype": dtype, "episodes": len(eps), "sequences": len(seqs),
            "tokens": sum(len(s.input_ids) for s in seqs), "rollout_s": rollout_s, "trainer_step_s": step_s,
            "reference_forward_s": ref_s, "policy_forward_backward_s": step_s - ref_s,
            "whole_step_s": rollout_s + step_s, "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.problems, a.samples, a.micro)))
        return
    rows = []
    for dt in ("float32", "bfloat16", "bfloat16", "float32"):
        r = subprocess.run([sys.executable, __file__, "--out", a.out, "--one", dt, "--problems", str(a.problems),
                            "--samples", str(a.samples), "--micro", str(a.micro)],
                           capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    mean = lambda dt, k: sum(r[k] for r in rows if r["dtype"] == dt) / 2  # noqa: E731
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    out = {"rows": rows, "commit": commit, "cpu": cpu, "machine": platform.machine(),
           "ratio_whole_step_fp32_over_bf16": mean("float32", "whole_step_s") / mean("bfloat16", "whole_step_s"),
           "ratio_trainer_fp32_over_bf16": mean("float32", "trainer_step_s") / mean("bfloat16", "trainer_step_s"),
           "ratio_rollouts_fp32_over_bf16": mean("float32", "rollout_s") / mean("bfloat16", "rollout_s"),
           "command": f"python scripts/step_ab.py --out {a.out}"}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
