"""A whole SCoRe step (rollouts + trainer step) of two variants on this CPU, each in its own process (so each
reports its own peak resident memory), in ABBA order, split into rollouts / policy forward-backward / reference
forward, in wall seconds and in CPU seconds of the process (the fairer number when other jobs share the cores).
One precision: each variant samples its rollouts in the dtype its trainer computes in, as the RL loop does.

    # fp32 against bf16 on this checkout (~10 min on one core of a 2-core EPYC)
    python scripts/step_ab.py --out results/signal-arith/step-ab.json
    # an older commit's step at its own defaults against this checkout's (issue 21: "2x faster than today's")
    python scripts/step_ab.py --old 403116e --out results/signal-arith/step-old-vs-new.json
    # a change of this session against the commit before it, both at cpu-learn's micro-batch of 4
    python scripts/step_ab.py --old e568626 --old-micro 4 --problems 16 --samples 4 --out ...
    # one engine change alone: the rollouts of a commit before it against this checkout's (same episodes?)
    python scripts/step_ab.py --old e274e67 --problems 16 --samples 4 --rollouts-only --out ...

With ``--old REV`` the old variant runs from a worktree of REV (its trainer dtype ``auto``, micro-batch 8, its
engine's default compute dtype: what a run did then); the new one runs this checkout with dtype ``auto`` and the
micro-batch of the ``cpu-learn`` preset.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_ENV = dict(os.environ)
"""The environment this script was started with: each variant's process gets it, not what importing scorebench
here sets (``scorebench.PRIMITIVE_CACHE_CAPACITY``), so an older checkout runs with its own settings."""


class _Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def one(dtype: str, problems: int, samples: int, micro: int, rollouts_only: bool = False) -> dict:
    import torch

    from scorebench import models
    try:
        from scorebench.bench.train import sample_episodes, score_sequences
    except ImportError:  # an older checkout
        from scorebench.bench_train import sample_episodes, score_sequences
    from scorebench.engines.hf import HFEngine
    from scorebench.training import TrainConfig, Trainer
    model, tok = models.load(None)
    with tempfile.TemporaryDirectory() as d:
        cfg = TrainConfig(lr=1e-6, batch_size=problems * samples * 2, micro_batch_size=micro, dtype=dtype,
                          loss_normalization="sequences", kl_estimator="full")
        tr = Trainer(model, tok, cfg, d, temperature=0.7)
        engine = HFEngine(model=tr.model, tokenizer=tok, batch_size=32)
        train_dtype = cfg.resolved_dtype("cpu")
        rollout_dtype = (engine.use_compute_dtype(train_dtype) if hasattr(engine, "use_compute_dtype")
                         else str(getattr(engine, "compute_dtype", "default")))
        with _Clock() as roll:
            eps = sample_episodes(tr.model, tok, problems, samples, max_new_tokens=128, engine=engine)
        seqs = score_sequences(tok, eps)
        getattr(engine, "release_weights", lambda: None)()  # as the RL loop does before the trainer step
        try:  # and hands the rollouts' freed heap back (older checkouts: no trim_heap)
            from scorebench.device import trim_heap
            trim_heap()
        except ImportError:
            pass
        if rollouts_only:
            import hashlib
            ids = [[list(t.response_ids) for t in e.turns] for e in eps]
            return {"dtype": dtype, "rollout_dtype": rollout_dtype, "episodes": len(eps), "rollout_s": roll.wall,
                    "rollout_cpu_s": roll.cpu, "threads": torch.get_num_threads(),
                    "episodes_md5": hashlib.md5(json.dumps(ids).encode()).hexdigest(),
                    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
        with _Clock() as step:
            tr.step(seqs)
        with _Clock() as ref:  # the reference's share: its forward on the same micro-batches, alone
            shared = tr.shared_prompts(seqs) if hasattr(tr, "shared_prompts") else None  # older checkouts: none
            for mb in (tr.micro_batches(seqs, shared) if shared else tr.micro_batches(seqs)):
                # what the step runs: with shared prompts, each sequence from its prompt's end, the prompts' past
                ids, mask, w, k = tr._collate(mb, *([[shared.start(s) for s in mb]] if shared else []))
                rows, cols = (k != 0).nonzero(as_tuple=True)
                past = {"past": shared.past(mb, reference=True)} if shared else {}  # older checkouts: no past
                tr._ref_logits_at(ids, mask, rows, cols, **past)
    return {"dtype": dtype, "train_dtype": train_dtype, "rollout_dtype": rollout_dtype, "micro": micro,
            "episodes": len(eps), "sequences": len(seqs), "tokens": sum(len(s.input_ids) for s in seqs),
            "rollout_s": roll.wall, "trainer_step_s": step.wall, "reference_forward_s": ref.wall,
            "policy_forward_backward_s": step.wall - ref.wall, "whole_step_s": roll.wall + step.wall,
            "rollout_cpu_s": roll.cpu, "trainer_step_cpu_s": step.cpu, "reference_forward_cpu_s": ref.cpu,
            "whole_step_cpu_s": roll.cpu + step.cpu, "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def _git(*args, cwd=ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _variant(label, tree: Path, dtype, micro, a) -> dict:
    env = {**BASE_ENV, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": BASE_ENV.get("OMP_NUM_THREADS", "1")}
    r = subprocess.run([sys.executable, __file__, "--out", a.out, "--one", dtype, "--problems", str(a.problems),
                        "--samples", str(a.samples), "--micro", str(micro)]
                       + (["--rollouts-only"] if a.rollouts_only else []),
                       capture_output=True, text=True, env=env, cwd=tree)
    if r.returncode:
        raise SystemExit(f"{label} failed:\n{r.stderr[-3000:]}")
    return {"variant": label, **json.loads(r.stdout.strip().splitlines()[-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--micro", type=int, default=8, help="micro-batch of both variants without --old")
    ap.add_argument("--old", help="compare this commit's step at its defaults with this checkout's")
    ap.add_argument("--old-micro", type=int, default=8,
                    help="the old variant's micro-batch with --old (8: the issue's code; 4: a cpu-learn checkout)")
    ap.add_argument("--rollouts-only", action="store_true",
                    help="time the rollouts alone, and say whether both variants drew the same episodes")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.problems, a.samples, a.micro, a.rollouts_only)))
        return
    if a.old:
        from scorebench.training import load_preset
        old_tree = Path(tempfile.mkdtemp(prefix="step-old-"))
        _git("worktree", "add", "--detach", str(old_tree), a.old)
        new_tree = Path(tempfile.mkdtemp(prefix="step-new-"))  # a snapshot: the checkout may change meanwhile
        _git("worktree", "add", "--detach", str(new_tree), "HEAD")
        new_micro = load_preset("cpu-learn")["micro_batch_size"]
        variants = {"old": (old_tree, "auto", a.old_micro), "new": (new_tree, "auto", new_micro)}
        order = ["old", "new", "new", "old"]
    else:
        variants = {"float32": (ROOT, "float32", a.micro), "bfloat16": (ROOT, "bfloat16", a.micro)}
        order = ["float32", "bfloat16", "bfloat16", "float32"]
    commits = {label: _git("rev-parse", "--short", "HEAD", cwd=tree) for label, (tree, *_) in variants.items()}
    rows = []
    try:
        for label in order:
            rows.append(_variant(label, *variants[label], a))
            print(rows[-1], flush=True)
    finally:
        if a.old:
            for tree in (old_tree, new_tree):
                _git("worktree", "remove", "--force", str(tree))
    first, second = order[0], order[1]

    def mean(v, k):
        return sum(r[k] for r in rows if r["variant"] == v) / 2
    ratios = {f"ratio_{k}_{first}_over_{second}": mean(first, k) / mean(second, k)
              for k in ("whole_step_s", "whole_step_cpu_s", "trainer_step_s", "trainer_step_cpu_s", "rollout_s",
                        "rollout_cpu_s") if k in rows[0]}
    if a.rollouts_only:
        ratios["identical_episodes"] = len({r["episodes_md5"] for r in rows}) == 1
    from scorebench.machine import cpu_model
    cpu = cpu_model()
    out = {"rows": rows, "commit": commits[order[1]], "old_commit": commits[order[0]] if a.old else None, "cpu": cpu,
           "machine": platform.machine(), "cores": os.cpu_count(), **ratios,
           "peak_rss_gb": {v: max(r.get("peak_rss_gb", 0) for r in rows if r["variant"] == v) for v in variants},
           "command": "python " + " ".join(["scripts/step_ab.py", *sys.argv[1:]])}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
