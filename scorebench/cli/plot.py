"""``scorebench plot``: figures (PNG + PDF) from run directories."""
from __future__ import annotations

import os
from pathlib import Path

from ..checks import output_dir
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="figures", help="output directory")


def main(a) -> int:
    from ..plots import all_figures  # imports matplotlib (seconds): here, so `scorebench plot --help` does not wait
    for r in a.runs:
        if not os.path.isdir(r):
            raise CLIError(f"{r} is not a directory")
    output_dir(a.out)
    for p in all_figures([Path(r) for r in a.runs], Path(a.out)):
        print(p)
    return 0
