"""A run directory's test episodes graded again by this checkout's grader, beside the rewards it recorded: what a
change of the extraction rule moves, without rerunning anything (episodes.jsonl is only read).

Every generated attempt goes through ``protocol.grade``, the one rule runs use (a cut attempt is wrong under strict
grading whatever its text); runs of rules 1 (lax grading) are skipped. Metrics come from ``metrics.compute`` on the
regraded episodes, as tables do.

    python scripts/regrade.py results/runs/score-arith-mix-cpu-learn results/runs/base-arith-mix-strict
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


def regrade(run: Path) -> dict | None:
    from scorebench import metrics as M
    from scorebench.api.protocol import grade, problem_id
    from scorebench.registry import TASKS
    from scorebench.rundir import RunDir
    rd = RunDir(run)
    cfg = rd.config()
    c = cfg.get("config", {})
    if c.get("rules", 1) < 2:
        return None
    task = TASKS.get(c["task"])(**c.get("task_args", {}))
    examples = {str(ex["id"]): ex for ex in task.test()}
    old = rd.episodes()
    new, flips = copy.deepcopy(old), {"0->1": 0, "1->0": 0}
    turns = [(ep, t) for ep in new for t in ep.attempts if not t.given]
    results = grade(task, [examples[problem_id(ep.id)] for ep, _ in turns], [t.response for _, t in turns],
                    [t.finish_reason != "length" for _, t in turns])
    for (_, t), res in zip(turns, results):
        if res["reward"] != t.reward:
            flips["0->1" if res["reward"] > (t.reward or 0) else "1->0"] += 1
            t.reward = res["reward"]
    seed = c.get("seed", 0)
    keys = ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i")
    mo, mn = M.compute(old, seed=seed), M.compute(new, seed=seed)
    return {"run": run.name, "attempts": sum(len(e.attempts) for e in old), "flips": flips,
            "recorded": {k: round(100 * mo[k], 1) for k in keys},
            "regraded": {k: round(100 * mn[k], 1) for k in keys},
            "regraded_ci95": {k: [round(100 * x, 1) for x in mn["ci95"][k]] for k in keys if k in mn.get("ci95", {})}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", help="also write the rows as JSON here")
    a = ap.parse_args()
    rows = [r for r in (regrade(Path(p)) for p in a.runs) if r]
    print("| run | attempts | 0→1 | 1→0 | recorded Acc@t1 / Acc@t2 / Δ | regraded Acc@t1 / Acc@t2 / Δ |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{m['acc_t1']} / {m['acc_t2']} / {m['delta']:+.1f}" for m in (r["recorded"], r["regraded"])]
        print(f"| {r['run']} | {r['attempts']} | {r['flips']['0->1']} | {r['flips']['1->0']} | {cells[0]} | {cells[1]} |")
    if a.out:
        from scorebench.rundir import git_commit
        Path(a.out).write_text(json.dumps({"command": "python " + " ".join(["scripts/regrade.py", *sys.argv[1:]]),
                                           "commit": git_commit(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
