"""What ``training.memory.paged_out`` costs and frees: AdamW's moments for as many parameters as the embedded model
has, in blocks (``flat_adam_state``), paged out and back three times; per round the seconds to write them out and
drop their pages, to read them back, and the resident size before and inside.

    OMP_NUM_THREADS=1 python scripts/paged_moments_cost.py --out results/signal-arith/paged-moments-cost.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from scorebench.machine import cpu_model, rss_gb
from scorebench.training.config import cpu_has_amx
from scorebench.training.memory import flat_adam_state, paged_out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=134_515_008, help="parameters (default: SmolLM2-135M's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    p = torch.nn.Parameter(torch.zeros(a.params))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones(a.params)
    flat_adam_state(opt)
    opt.step()
    p.grad = None
    rounds = []
    for _ in range(a.rounds):
        r0, t0 = rss_gb(), time.perf_counter()
        with paged_out(opt):
            t1, r1 = time.perf_counter(), rss_gb()
        rounds.append({"out_s": round(t1 - t0, 3), "back_s": round(time.perf_counter() - t1, 3),
                       "rss_before_gb": r0, "rss_inside_gb": r1})
        print(rounds[-1])
    res = {"params": a.params, "moment_gb": 2 * a.params * 4 / 1e9, "rounds": rounds,
           "cpu": cpu_model(), "amx": cpu_has_amx(), "threads": torch.get_num_threads()}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
