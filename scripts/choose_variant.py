"""Apply the study's choice rule (``results/study-arith.md``: written before any variant ran) to the last
validation point of each run directory: which variant, if any, beats the baseline. Prints a markdown table and
the decision; never reads test numbers.

    python scripts/choose_variant.py results/runs/score-arith-cpu-learn-s0 results/runs/score-arith-cpu-learn-unbiased-s0 ...
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scorebench.training.validation import beats, choose, last_point


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--min-gain", type=float, default=1.0, help="points of validation Δ a variant must gain")
    ap.add_argument("--max-t2-loss", type=float, default=1.0, help="points of validation Acc@t2 it may lose")
    a = ap.parse_args()
    base = last_point(a.baseline)
    points = {Path(v).name: last_point(v) for v in a.variants}
    print("| run | step | val Acc@t1 | val Acc@t2 | val Δ | beats the baseline |")
    print("|---|---|---|---|---|---|")
    for name, p in [(Path(a.baseline).name + " (baseline)", base), *points.items()]:
        verdict = "–" if p is base else ("yes" if beats(p, base, a.min_gain / 100, a.max_t2_loss / 100) else "no")
        print(f"| {name} | {p['step']} | {100 * p['acc_t1']:.1f} | {100 * p['acc_t2']:.1f} | "
              f"{100 * p['delta']:+.1f} | {verdict} |")
    won = choose(base, points, a.min_gain / 100, a.max_t2_loss / 100)
    print(f"\nadopted: {won or Path(a.baseline).name + ' stays (no variant beats it)'}")


if __name__ == "__main__":
    main()
