"""Calibrate the arith task's difficulty against a model: turn-1 accuracy per (steps, max_operand).

    .venv/bin/python scripts/calibrate_arith.py --n 64 --grid 1:10 1:20 2:10 2:20 3:10

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
    print("| steps | max_operand | n | turn-1 accuracy | seconds |\n|---|---|---|---|---|")
    for g in a.grid:
        steps, mx = map(int, g.split(":"))
        task = Arith(steps=steps, max_operand=mx, n_train=a.n, n_test=8)
        t = time.time()
        eps = run_protocol(eng, task, task.train(), SamplingParams(temperature=a.temperature,
                           max_new_tokens=a.max_new_tokens), ProtocolConfig(turns=1), progress=False)
        acc = sum(e.rewards[0] for e in eps) / len(eps)
        print(f"| {steps} | {mx} | {len(eps)} | {100 * acc:.1f}% | {time.time() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
