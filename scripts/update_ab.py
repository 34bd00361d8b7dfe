"""The trainer's update on fixed SCoRe sequences, compared between two checkouts (a bisection tool: is a change in
learning the trainer's arithmetic or something upstream of it?).

    python scripts/update_ab.py build RUN 10,11,12 SEQS.json           # this checkout: a run's rollouts of those
        # steps as training sequences with SCoRe's weights (the cpu-learn schedule: 8 Stage I + 24 Stage II steps)
    PYTHONPATH=TREE python scripts/update_ab.py step SEQS.json DTYPE OUT.pt [k=v ...]   # any checkout: two
        # trainer steps from the base model on the first two steps' sequences (lr 2e-5, temperature 0.7,
        # loss over episodes, a frozen reference; k=v: TrainConfig fields such as micro_batch_size=4)
    python scripts/update_ab.py compare A.pt B.pt                      # cosine and relative difference of updates

``step`` uses only APIs that 5a2dbc1 (the study's commit) has too, so a worktree or ``git archive`` of it can run
it. Results: ``results/signal-arith/update-ab-5a2dbc1.json``.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile


def build(run: str, steps: str, out: str) -> None:
    import numpy as np
    from scorebench import models
    from scorebench.methods.score import ScoreAlgorithm, ScoreConfig
    from scorebench.protocol import Episode
    from scorebench.training.sequences import episode_to_sequences
    _, tok = models.load(None)
    algo = ScoreAlgorithm(ScoreConfig(stage1_steps=8, stage2_steps=24, problems_per_step=16, samples_per_problem=4))
    res = []
    lines = [json.loads(line) for line in open(f"{run}/train/rollouts.jsonl")]
    for step in (int(s) for s in steps.split(",")):
        eps = [Episode.from_json(d) for d in lines if d["step"] == step]
        r = np.array([e.rewards for e in eps], dtype=float).reshape(len(eps) // 4, 4, -1)
        w, kl, extra = algo.weights(step - 1, r)  # the log counts steps from 1, the schedule from 0
        w, kl = w.reshape(len(eps), -1), kl.reshape(len(eps), -1)
        seqs = [s for e, wi, ki in zip(eps, w, kl) for s in episode_to_sequences(tok, e, list(wi), list(ki))]
        res.append([[s.input_ids, s.weights, s.kl_weights, s.group] for s in seqs])
        print(step, extra, len(seqs), sum(len(s.input_ids) for s in seqs))
    json.dump(res, open(out, "w"))


def step(seqs_path: str, dtype: str, out: str, *overrides: str) -> None:
    import torch
    from scorebench import models
    from scorebench.training.config import TrainConfig
    from scorebench.training.sequences import Sequence
    from scorebench.training.trainer import Trainer
    torch.manual_seed(0)
    model, tok = models.load(None)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    d = {"lr": 2e-5, "batch_size": 16, "dtype": dtype, "temperature": 0.7, "lr_schedule": "constant",
         "warmup_steps": 0}
    for k, v in (a.split("=") for a in overrides):
        d[k] = None if v == "none" else (v == "true" if v in ("true", "false") else int(v))
    cfg = TrainConfig.from_dict({k: v for k, v in d.items() if k in names})
    cfg.loss_normalization = "sequences"  # what SCoRe sets
    tr = Trainer(model, tok, cfg, tempfile.mkdtemp(), temperature=0.7)
    p0 = torch.cat([p.detach().float().flatten().clone() for p in tr.params])
    stats = []
    for batch in json.load(open(seqs_path))[:2]:
        st = tr.step([Sequence(a, b, c, g) for a, b, c, g in batch])
        stats.append({k: st[k] for k in ("loss", "pg", "kl_term", "kl", "grad_norm", "step_time")})
        print(stats[-1], flush=True)
    p1 = torch.cat([p.detach().float().flatten() for p in tr.params])
    torch.save({"delta": p1 - p0, "stats": stats, "cfg": d}, out)


def compare(a_path: str, b_path: str) -> dict:
    import torch
    a, b = torch.load(a_path), torch.load(b_path)
    da, db = a["delta"].double(), b["delta"].double()
    row = {"a": a_path, "b": b_path, "norm_a": float(da.norm()), "norm_b": float(db.norm()),
           "cosine": float(da @ db / (da.norm() * db.norm())), "rel_diff": float((da - db).norm() / da.norm()),
           "stats_a": a["stats"], "stats_b": b["stats"]}
    print(f"{a_path} vs {b_path}: |d| {row['norm_a']:.5g} vs {row['norm_b']:.5g}, cos {row['cosine']:.6f}, "
          f"rel diff {row['rel_diff']:.3e}")
    return row


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"build": build, "step": step, "compare": compare}[cmd](*args)
