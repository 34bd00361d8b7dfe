"""``scorebench table``: metrics recomputed from run directories, as a markdown table."""
from __future__ import annotations

import os

from ..tables import seed_mean_table, table_from_runs
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--no-ci", action="store_true", help="omit confidence intervals")
    p.add_argument("--diagnostics", action="store_true",
                   help="add behavior columns: answers cut by the token cap, mean tokens, identical attempts")
    p.add_argument("--seed-mean", action="store_true",
                   help="finished runs that differ only in their seed become one row: the seeds' mean with a 95%% "
                        "CI resampling seeds and problems")


def main(a) -> int:
    for r in a.runs:
        if not os.path.isdir(r):
            raise CLIError(f"{r} is not a directory")
    if a.seed_mean and a.diagnostics:
        raise CLIError("--seed-mean and --diagnostics do not combine (the behavior columns are per run)")
    if a.seed_mean:
        print(seed_mean_table(a.runs, ci=not a.no_ci), end="")
    else:
        print(table_from_runs(a.runs, ci=not a.no_ci, diagnostics=a.diagnostics), end="")
    return 0
