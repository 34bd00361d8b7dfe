"""``scorebench lm-eval``: Acc@t1 by lm-evaluation-harness beside scorebench's, problem by problem (offline)."""
from __future__ import annotations

import os

from ..lmeval.check import check
from .common import config_flags


def add_arguments(p) -> None:
    p.add_argument("target", metavar="RUN_DIR_OR_MODEL",
                   help="a run directory (its policy/, else the model its config names) or a model dir/id/embedded")
    p.add_argument("--tasks", default="scorebench_arith", help="comma-separated: scorebench_arith, scorebench_math500")
    config_flags(p, "limit", limit={"sentences": 1})
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR/lm_eval, or runs/lm-eval-<model>)")
    config_flags(  # both harnesses: their own defaults and words
        p, "batch_size", "dtype", "compute_dtype", "device",
        batch_size={"default": 32, "help": "batch size of both harnesses"},
        dtype={"help": "dtype both harnesses load the weights in"},
        compute_dtype={"default": "float32", "help": "scorebench engine's compute dtype when it runs now (float32 = "
                                                     "lm-eval's arithmetic; auto = `scorebench run`'s default)"},
        device={"default": "cpu", "help": "device of both harnesses (cpu, cuda)"})


def main(a) -> int:
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("cmd", "target") and v is not None]
    r = check(a.target, a.tasks, limit=a.limit, out=a.out, batch_size=a.batch_size, dtype=a.dtype,
              compute_dtype=a.compute_dtype, device=a.device, command=" ".join(["scorebench lm-eval", a.target,
                                                                                 *flags]))
    with open(os.path.join(r["out"], "comparison.md")) as f:
        print(f.read(), end="")
    print(f"lm-eval results and comparison: {r['out']}")
    return 0
