"""Per-step training-rollout accuracy of a trained run, overall and by a metadata key (train problems only).

    .venv/bin/python scripts/rollout_summary.py RUN_DIR [--by steps] [--every 4]

Reads RUN_DIR/train/rollouts.jsonl (every rollout episode SCoRe sampled, with its step and stage): the rollouts are
train problems sampled at the training temperature, so this is the calibration evidence that never touches the
test split. Prints a markdown table: step ranges, stage, turn-1 / turn-2 accuracy, mean tokens and the share cut
by the token cap per turn (a policy that learns to stop early shows here), and turn-1 accuracy per group.
"""
import argparse
import json
from collections import defaultdict
from pathlib import Path

from scorebench.metrics import is_correct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--by", default="steps", help="episode metadata key to split turn-1 accuracy by")
    ap.add_argument("--every", type=int, default=4, help="steps per table row")
    a = ap.parse_args()
    rows = defaultdict(list)
    for line in (Path(a.run) / "train" / "rollouts.jsonl").read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            rows[(e["step"] - 1) // a.every].append(e)
    groups = sorted({str(e["meta"].get(a.by)) for es in rows.values() for e in es})
    print("| steps | stage | episodes | turn-1 acc | turn-2 acc | tokens t1 / t2 | cut t1 / t2 | "
          + " | ".join(f"turn-1 acc, {a.by}={g}" for g in groups) + " |")
    print("|---" * (7 + len(groups)) + "|")
    for k in sorted(rows):
        es = rows[k]
        ok = lambda e, t: is_correct(e["turns"][t]["reward"])  # noqa: E731
        r1 = sum(ok(e, 0) for e in es) / len(es)
        r2 = sum(ok(e, -1) for e in es) / len(es) if len(es[0]["turns"]) > 1 else float("nan")
        by = []
        for g in groups:
            sub = [e for e in es if str(e["meta"].get(a.by)) == g]
            by.append(f"{100 * sum(ok(e, 0) for e in sub) / len(sub):.0f}% (n={len(sub)})" if sub else "–")
        two = len(es[0]["turns"]) > 1
        tok = lambda t: sum(e["turns"][t]["n_tokens"] for e in es) / len(es)  # noqa: E731
        cut = lambda t: 100 * sum(e["turns"][t]["finish_reason"] == "length" for e in es) / len(es)  # noqa: E731
        tokens = f"{tok(0):.0f} / {tok(-1):.0f}" if two else f"{tok(0):.0f}"
        cuts = f"{cut(0):.0f}% / {cut(-1):.0f}%" if two else f"{cut(0):.0f}%"
        steps = sorted({e["step"] for e in es})
        stages = "/".join(sorted({e["stage"] for e in es}))
        print(f"| {steps[0]}–{steps[-1]} | {stages} | {len(es)} | {100 * r1:.1f}% | {100 * r2:.1f}% | {tokens} | {cuts} | "
              + " | ".join(by) + " |")


if __name__ == "__main__":
    main()
