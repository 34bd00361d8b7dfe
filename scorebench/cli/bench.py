"""``scorebench bench``: engine, grading and training-step speed (``scorebench/bench.py``)."""
from __future__ import annotations

from .. import checks, models
from ..device import resolve
from .common import config_flags


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="a reduced run (under 3 minutes)")
    p.add_argument("--out", default="runs/bench.md",
                   help="where to write the table (the shipped one is results/bench.md)")
    config_flags(p, "model", "device", device={
        "sentences": 1, "note": "(bench writes only its markdown table, no config.json)"})
    p.add_argument("--train-only", action="store_true",
                   help="only the ceilings and the training-step section (a SCoRe step vs a plain HF step)")


def main(a) -> int:
    from ..bench import run_bench  # imports torch (seconds): here, so `scorebench bench --help` does not wait
    checks.output_file(a.out)
    models.check(a.model)
    run_bench(quick=a.quick, out=a.out, model=a.model, train_only=a.train_only, device=resolve(a.device))
    return 0
