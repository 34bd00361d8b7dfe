"""``scorebench reproduce``: every row of one of the paper's tables, written beside the paper's."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..device import default_batch_size
from ..dist import is_main
from .. import reproduce as paper  # paper.reproduce looked up when it runs, so a test can stand in for it
from ..reproduce import TABLES, commands
from ..runner import RunConfig
from .common import config_flags, kv, preset_flag
from .errors import CLIError


def _task_defaults() -> str:
    """Which task each table runs when --task is left out, from ``TABLES``: "arith for 1; humaneval for 3"."""
    by_task: dict[str, list[str]] = {}
    for n, t in TABLES.items():
        by_task.setdefault(t.task, []).append(str(n))
    return "; ".join(f"{task} for {', '.join(ns)}" for task, ns in by_task.items())


def add_arguments(p) -> None:
    p.add_argument("--table", type=int, required=True, choices=sorted(TABLES),
                   help="the paper's table: 1 (SFT baselines), 2 (main), 3 (code, with MBPP-R), 4 (ablations)")
    config_flags(p, "task", task={"default": None, "note": f"(default: {_task_defaults()})"})
    preset_flag(p, default="cpu-small")
    config_flags(p, "model", "engine", "limit", "max_new_tokens", "seed", "task_args")
    p.add_argument("--runs-dir", default="runs", help="where row run directories live (reused when present)")
    p.add_argument("--out", default=None,
                   help="where the table files go (default: runs/table<N>-<task>; the shipped ones are in "
                        "results/table<N>-<task>)")
    config_flags(p, "device")
    p.add_argument("--seeds", type=_seeds, default=(),
                   help="train each trained row once per seed (e.g. 0,1,2) and report the seeds' mean with a CI "
                        "over seeds and problems; untrained rows run once at --seed")
    p.add_argument("--seed-rows", type=lambda v: tuple(x for x in v.split(",") if x), default=(),
                   help="with --seeds: only these rows (methods, comma-separated) run every seed; the other trained "
                        "rows run once at --seed (default: every trained row)")
    p.add_argument("--jobs", type=int, default=1,
                   help="run this many unfinished rows side by side, each its own process with an equal share of "
                        "the cores (on a small CPU, two one-thread runs beat one two-thread run); logs in "
                        "<out>/logs/")
    p.add_argument("--finished-only", action="store_true",
                   help="run nothing: write the table from the runs that have finished (a seeded row from its "
                        "finished seeds), marked partial, with the missing runs' commands under it")
    p.add_argument("--dry-run", action="store_true",
                   help="print each row's `scorebench run` command (to run elsewhere or in parallel) and stop")


def _seeds(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {v!r}") from None


def main(a) -> int:
    task = a.task or TABLES[a.table].task
    base = RunConfig(task=task, model=a.model, engine=a.engine, device=a.device, limit=a.limit,
                     max_new_tokens=a.max_new_tokens, batch_size=default_batch_size(a.device),
                     seed=a.seed, task_args=kv(a.task_args, "--task-arg"), method_args={"preset": a.preset})
    if a.seed_rows and not a.seeds:
        raise CLIError("--seed-rows needs --seeds")
    if a.dry_run:
        print("\n".join(commands(a.table, base, Path(a.runs_dir), a.seeds, a.seed_rows)))
        return 0
    out = Path(a.out or f"runs/table{a.table}-{task}")
    paper.reproduce(a.table, base, Path(a.runs_dir), out, seeds=a.seeds, rows=a.seed_rows, jobs=a.jobs,
                    finished_only=a.finished_only)
    if is_main():
        print((out / f"table{a.table}.md").read_text(), end="")
    return 0
