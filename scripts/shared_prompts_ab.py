"""The trainer step with a boolean ``TrainConfig`` switch on against off (``--flag``; default
``share_prompts``), on the same sequences: one 16 x 4 bf16 SCoRe-shaped rollout (as ``step_ab.py`` samples it),
then a trainer step from a fresh trainer in its own process for each variant, ABBA; process-CPU seconds, peak
resident memory, and the step's loss and gradient norm (the same up to bf16 summation order).

    OMP_NUM_THREADS=1 python scripts/shared_prompts_ab.py --out results/signal-arith/shared-prompts-ab.json
    OMP_NUM_THREADS=1 python scripts/shared_prompts_ab.py --flag lean_activations --out ...
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def trainer(cfg_kw: dict):
    from scorebench import models
    from scorebench.training import TrainConfig, Trainer
    model, tok = models.load(None)
    cfg = TrainConfig(lr=1e-6, batch_size=128, micro_batch_size=4, dtype="auto", loss_normalization="sequences",
                      kl_estimator="full", **cfg_kw)
    return Trainer(model, tok, cfg, tempfile.mkdtemp(), temperature=0.7), tok


def sample(path: str, problems: int, samples: int) -> None:
    from scorebench.bench.train import sample_episodes, score_sequences
    from scorebench.engines.hf import HFEngine
    tr, tok = trainer({})
    engine = HFEngine(model=tr.model, tokenizer=tok, batch_size=32)
    engine.use_compute_dtype(tr.cfg.resolved_dtype("cpu"))
    eps = sample_episodes(tr.model, tok, problems, samples, max_new_tokens=128, engine=engine)
    Path(path).write_text(json.dumps([s.to_json() for s in score_sequences(tok, eps)]))


def one(path: str, flag: str, share: bool) -> dict:
    import torch
    from scorebench.training.sequences import Sequence
    seqs = [Sequence.from_json(d) for d in json.loads(Path(path).read_text())]
    tr, _ = trainer({flag: share})
    c, t = time.process_time(), time.perf_counter()
    st = tr.step(seqs)
    shared = tr.shared_prompts(seqs)  # after the timed step: it runs the prompts' forward
    return {flag: share, "trainer_step_cpu_s": time.process_time() - c,
            "trainer_step_s": time.perf_counter() - t, "loss": st["loss"], "grad_norm": st["grad_norm"],
            "sequences": len(seqs), "tokens": sum(len(s.input_ids) for s in seqs),
            "shared_prompts": len(shared.prompts) if shared else 0,
            "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--flag", default="share_prompts", help="a boolean TrainConfig field to switch")
    ap.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--seqs", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.seqs, a.flag, a.one == "on")))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as d:
        seqs = str(Path(d) / "seqs.json")
        sample(seqs, a.problems, a.samples)
        rows = []
        for v in ("off", "on", "on", "off"):
            r = subprocess.run([sys.executable, __file__, "--out", a.out, "--flag", a.flag, "--one", v,
                                "--seqs", seqs], capture_output=True, text=True, env=env, cwd=ROOT)
            if r.returncode:
                raise SystemExit(r.stderr[-3000:])
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)

    def mean(share, k):
        return sum(r[k] for r in rows if r[a.flag] == share) / 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    from scorebench.machine import cpu_model
    cpu = cpu_model()
    out = {"rows": rows, "flag": a.flag, "commit": commit, "cpu": cpu, "cores": os.cpu_count(),
           "ratio_trainer_step_cpu_s_off_over_on": mean(False, "trainer_step_cpu_s") / mean(True, "trainer_step_cpu_s"),
           "command": "python " + " ".join(["scripts/shared_prompts_ab.py", *sys.argv[1:]])}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
