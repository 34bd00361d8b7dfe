"""``scorebench table``: metrics recomputed from run directories, as a markdown table."""
from __future__ import annotations

import os

from ..tables import table_from_runs
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--no-ci", action="store_true", help="omit confidence intervals")
    p.add_argument("--diagnostics", action="store_true",
                   help="add behavior columns: answers cut by the token cap, mean tokens, identical attempts")


def main(a) -> int:
    for r in a.runs:
        if not os.path.isdir(r):
            raise CLIError(f"{r} is not a directory")
    print(table_from_runs(a.runs, ci=not a.no_ci, diagnostics=a.diagnostics), end="")
    return 0
