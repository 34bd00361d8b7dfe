"""Calibrate the arith task's difficulty against a model: turn-1 accuracy per (steps, max_operand, hard_fraction).

    .venv/bin/python scripts/calibrate_arith.py --n 64 --grid 1:10 1:20 2:10 2:20 3:10 1:10:0.5
    .venv/bin/python scripts/calibrate_arith.py --model RUN_DIR/policy --n 200 --grid 1:10:0.5

Uses the shared protocol (turns=1) on each setting's *train* split, so calibration never touches the test split.
"""
import argparse
import time

from scorebench.engines import SamplingParams, get_engine
from scorebench.protocol import ProtocolConfig, run_protocol
from scorebench.tasks.arith import Arith


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--grid", nargs="+", default=["1:10", "1:20", "2:10", "2:20", "3:10"])
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    eng = get_engine("hf", model_name=a.model, dtype=a.dtype)
    print(f"model: {a.model or 'embedded'}; train split, greedy={a.temperature == 0}, max_new_tokens {a.max_new_tokens}")
    print("| steps | max_operand | hard_fraction | n | turn-1 accuracy | by steps | cut | seconds |\n"
          "|---|---|---|---|---|---|---|---|")
    for g in a.grid:
        parts = g.split(":")
        steps, mx = int(parts[0]), int(parts[1])
        hard = float(parts[2]) if len(parts) > 2 else 0.0
        task = Arith(steps=steps, max_operand=mx, n_train=a.n, n_test=8, hard_fraction=hard)
        t = time.time()
        eps = run_protocol(eng, task, task.train(), SamplingParams(temperature=a.temperature,
                           max_new_tokens=a.max_new_tokens), ProtocolConfig(turns=1), progress=False)
        acc = sum(e.rewards[0] for e in eps) / len(eps)
        by = {}
        for e in eps:
            by.setdefault(e.meta["steps"], []).append(e.rewards[0])
        by_s = ", ".join(f"{k}: {100 * sum(v) / len(v):.0f}% (n={len(v)})" for k, v in sorted(by.items()))
        cut = sum(e.turns[0].finish_reason == "length" for e in eps) / len(eps)
        print(f"| {steps} | {mx} | {hard} | {len(eps)} | {100 * acc:.1f}% | {by_s} | {100 * cut:.0f}% "
              f"| {time.time() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
