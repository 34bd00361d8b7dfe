"""``scorebench scaling``: parallel sampling vs sequential self-correction at equal sample budgets."""
from __future__ import annotations

import json

from .. import checks, get_task, models
from ..device import default_batch_size, resolve
from ..engines import SamplingParams, get_engine
from ..scaling import run_scaling
from .common import config_flags
from .errors import CLIError


def add_arguments(p) -> None:
    config_flags(p, "task", "model", "limit", task={
        "required": True, "help": "a task with extracted answers to vote on (math kind: arith, math500)"},
        limit={"sentences": 1})
    p.add_argument("--budgets", default="1,2,4,8", help="comma-separated samples per problem")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0 for distinct samples)")
    config_flags(p, "max_new_tokens", "seed", "batch_size", seed={"help": "sampling seed"})
    p.add_argument("--out", required=True, help="output directory (episodes, scaling.json, figure)")
    config_flags(p, "device")


def main(a) -> int:
    try:
        budgets = [int(b) for b in a.budgets.split(",")]
    except ValueError:
        raise CLIError(f"--budgets expects comma-separated integers, got {a.budgets!r}") from None
    if min(budgets) < 1:
        raise CLIError(f"--budgets must all be >= 1, got {a.budgets!r}")
    checks.at_least(a.limit, 1, "--limit")
    checks.at_least(a.batch_size, 1, "--batch-size")
    checks.at_least(a.max_new_tokens, 1, "--max-new-tokens")
    SamplingParams(temperature=a.temperature)
    task = get_task(a.task)
    if task.kind != "math":
        raise CLIError(f"scaling needs a task with extracted answers to vote on (a math-kind task); "
                       f"{a.task!r} is {task.kind}")
    checks.output_dir(a.out)
    models.check(a.model)
    test = task.test()[:a.limit] if a.limit else task.test()
    engine = get_engine("hf", model_name=a.model, batch_size=default_batch_size(a.device, a.batch_size),
                        device=resolve(a.device))
    r = run_scaling(engine, task, test, budgets, a.out, a.temperature, a.max_new_tokens, a.seed)
    print(json.dumps(r, indent=1))
    return 0
