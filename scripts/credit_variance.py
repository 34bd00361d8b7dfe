"""Turn-2 advantages of the credit options on shipped SCoRe rollouts, under the rewards as logged (lax) and
re-graded with the strict rule (finished attempts only, final-answer extraction).

For every Stage II step of ``RUN/train/rollouts.jsonl`` the episodes are grouped by problem (RLOO over the
problem's samples, as the run trained): "paper" turn-2 advantage = shaped − b(shaped) = 11·(r2 − b(r2)) −
10·(r1 − b(r1)); "unbiased" = 11·(r2 − b(r2)). Reports the mean square of each, of the dropped part, the share of
non-zero paper advantages whose sign the dropped part decides, and how many rewards strict grading flips.
("per_attempt" needs several second attempts per first attempt, which shipped rollouts do not have.)

    python scripts/credit_variance.py results/runs/score-arith-mix-check --out results/signal-arith/credit-variance.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from methods.score import turn_weights
from scorebench.protocol import problem_id
from scorebench.tasks.arith import Arith

ALPHA = 10.0


def load(run: Path):
    steps = defaultdict(lambda: defaultdict(list))
    for line in (run / "train" / "rollouts.jsonl").read_text().splitlines():
        d = json.loads(line)
        if d.get("stage") == "II" and len(d["turns"]) >= 2:
            steps[d["step"]][problem_id(d["id"])].append(d)
    return steps


def rewards(eps, strict: Arith | None, gold: dict):
    if strict is None:
        return [[e["turns"][i]["reward"] for i in (0, 1)] for e in eps]
    out = []
    for e in eps:
        pid = problem_id(e["id"])
        row = []
        for t in e["turns"][:2]:
            ok = t.get("finish_reason") != "length" and strict.extract(t["response"]) == gold[pid]
            row.append(float(ok))
        out.append(row)
    return out


def analyse(run: Path, task_args: dict) -> dict:
    steps = load(run)
    task = Arith(**task_args)
    gold = {str(ex["id"]): int(ex["answer"]) for ex in task.train()}
    res = {}
    for rule in ("lax", "strict"):
        paper, unb, noise, flips, n_changed, n_rewards = [], [], [], 0, 0, 0
        for step, probs in sorted(steps.items()):
            groups = [rewards(eps, task if rule == "strict" else None, gold) for eps in probs.values()]
            k = min(len(g) for g in groups)
            r = np.array([g[:k] for g in groups], float)  # (problems, samples, 2)
            wp, _ = turn_weights(r[..., 0], r[..., 1], "II", ALPHA, 0.0, 0.0, "rloo", "paper")
            wu, _ = turn_weights(r[..., 0], r[..., 1], "II", ALPHA, 0.0, 0.0, "rloo", "unbiased")
            a_p, a_u = wp[..., 1].ravel(), wu[..., 1].ravel()
            paper += list(a_p)
            unb += list(a_u)
            noise += list(a_p - a_u)
            nz = a_p != 0
            flips += int((np.sign(a_p[nz]) != np.sign(a_u[nz])).sum())
            n_changed += int(nz.sum())
            if rule == "strict":
                lax = np.array([rewards(eps, None, gold)[:k] for eps in probs.values()], float)
                n_rewards += int((lax != r).sum())
        p, u, z = np.array(paper), np.array(unb), np.array(noise)
        res[rule] = {"episodes": len(p), "ms_paper": float((p ** 2).mean()), "ms_unbiased": float((u ** 2).mean()),
                     "ms_dropped_term": float((z ** 2).mean()), "var_paper": float(p.var()),
                     "var_unbiased": float(u.var()),
                     "sign_decided_by_dropped_term": flips / max(1, n_changed)}
        if rule == "strict":
            res[rule]["rewards_flipped_vs_lax"] = n_rewards / max(1, 2 * len(p))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = {}
    for r in a.runs:
        run = Path(r)
        cfg = json.loads((run / "config.json").read_text())
        task_args = dict(cfg["config"].get("task_args") or {})
        if cfg["config"]["task"] == "arith-mix":
            task_args.setdefault("hard_fraction", 0.5)
        out[run.name] = analyse(run, task_args)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
