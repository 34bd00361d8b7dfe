"""Which wrong first attempts a run's second attempts fix, and which right ones they break, by kind of mistake
(``scorebench/tasks/arith_errors.py``), counted from the test episodes of ``arith`` / ``arith-mix`` run directories.

    python scripts/fix_kinds.py results/runs/base-arith-strict results/runs/score-arith-16x4
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from scorebench.tasks.arith_errors import KINDS, transitions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    head = ["run", "episodes", "i→c", *[f"i→c: {k}" for k in KINDS], "i→c lucky", "c→i",
            *[f"c→i: {k}" for k in KINDS]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for run in a.runs:
        path = Path(run) / "episodes.jsonl"
        eps = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        t = transitions(eps)
        cells = [Path(run).name, t["episodes"], t["i2c"], *t["i2c_by_kind"].values(), t["i2c_lucky"], t["c2i"],
                 *t["c2i_by_kind"].values()]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
