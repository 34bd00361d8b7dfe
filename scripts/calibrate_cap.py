"""Choose each math task's default ``max_new_tokens`` on train problems, and measure what strict grading changes.

One greedy fp32 pass of the base model at a large cap (``--cap-max``) on ``--n`` problems of the task's training part
(never validation or test). A greedy attempt under a smaller cap c is the first c tokens of the long one, so one
pass gives, for every cap c: the share of first attempts cut, and the lax (old rule: last number of whatever text)
and strict (finished attempts only, final-answer extraction) accuracy of the first attempt. The chosen cap is the
smallest in ``--caps`` with at most 10% of first attempts cut.

    python scripts/calibrate_cap.py --task arith --n 200 --out results/signal-arith/cap-arith.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

from scorebench.engines import SamplingParams
from scorebench.engines.hf import HFEngine
from scorebench.protocol import ProtocolConfig, run_protocol
from scorebench.registry import TASKS
from scorebench.tasks.arith import extract_answer, extract_final
from scorebench.training.validation import training_split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="arith")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--cap-max", type=int, default=256)
    ap.add_argument("--caps", default="64,96,128,160,192,256")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    task = TASKS.get(a.task)()
    problems = training_split(task.train())[0][:a.n]
    engine = HFEngine(compute_dtype="float32", batch_size=32)
    t0 = time.time()
    eps = run_protocol(engine, task, problems, SamplingParams(temperature=0.0, max_new_tokens=a.cap_max),
                       ProtocolConfig(turns=1), keep_ids=True, chunk_size=64)
    seconds = time.time() - t0
    tok = engine.tokenizer
    rows = []
    for c in [int(x) for x in a.caps.split(",")]:
        cut = lax = strict = flips = 0
        for ex, ep in zip(problems, eps):
            t = ep.turns[0]
            ids = t.response_ids
            is_cut = len(ids) > c or (len(ids) == c and t.finish_reason == "length")
            text = tok.decode(ids[:c], skip_special_tokens=True).strip() if is_cut else t.response
            gold = int(ex["answer"])
            lx = extract_answer(text) == gold
            st = (not is_cut) and extract_final(text) == gold
            cut, lax, strict, flips = cut + is_cut, lax + lx, strict + st, flips + (lx != st)
        n = len(eps)
        rows.append({"cap": c, "cut_t1": cut / n, "acc_t1_lax": lax / n, "acc_t1_strict": strict / n,
                     "reward_flips": flips / n})
    chosen = next((r["cap"] for r in rows if r["cut_t1"] <= 0.10), None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"task": a.task, "n": len(eps), "cap_max": a.cap_max, "rows": rows, "chosen_cap": chosen,
           "tokens_t1_mean": sum(len(e.turns[0].response_ids) for e in eps) / len(eps),
           "seconds": round(seconds, 1), "commit": commit, "machine": platform.processor() or platform.machine(),
           "command": f"python scripts/calibrate_cap.py --task {a.task} --n {a.n} --cap-max {a.cap_max} "
                      f"--out {a.out}"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
