"""``python -m scorebench.bench``: the benchmark without the ``scorebench`` command (same flags but ``--device``)."""
from __future__ import annotations

import argparse
import sys

from . import __doc__ as doc
from .run import run_bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scorebench bench", description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer batch sizes and tokens (under 3 minutes)")
    ap.add_argument("--out", default="runs/bench.md", help="markdown report path ('' to skip writing)")
    ap.add_argument("--model", default=None, help="model id or path (default: the embedded SmolLM2-135M)")
    ap.add_argument("--train-only", action="store_true", help="only the ceilings and the training-step section")
    a = ap.parse_args(argv)
    run_bench(quick=a.quick, out=a.out or None, model=a.model, train_only=a.train_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
