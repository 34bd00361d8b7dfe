"""A run's training rollouts graded again by this checkout's grader (``protocol.grade``, the rule runs use): how
many rewards flip, by stage and turn. ``regrade.py`` does the same for test episodes; this one reads
``RUN/train/rollouts.jsonl`` (arith runs: the examples come from the task's train split).

    python scripts/regrade_rollouts.py results/runs/score-arith-cpu-learn-s0 results/runs/score-arith-cpu-learn-s1
"""
from __future__ import annotations

import json
import sys
from collections import Counter

from scorebench.api.protocol import grade, problem_id
from scorebench.registry import TASKS


def main(runs: list[str]) -> None:
    task = TASKS.get("arith")()
    examples = {str(e["id"]): e for e in task.train()}
    for run in runs:
        eps = [json.loads(line) for line in open(run + "/train/rollouts.jsonl")]
        turns = [(e, i, t) for e in eps for i, t in enumerate(e["turns"][:2])]
        res = grade(task, [examples[problem_id(e["id"])] for e, _, _ in turns], [t["response"] for _, _, t in turns],
                    [t["finish_reason"] != "length" for _, _, t in turns])
        flips, total = Counter(), Counter()
        for (e, i, t), r in zip(turns, res):
            key = (e["stage"], i + 1)
            total[key] += 1
            if r["reward"] != t["reward"]:
                flips[key + ("up" if r["reward"] > t["reward"] else "down",)] += 1
        print(run.rstrip("/").split("/")[-1], {f"stage {s} turn {i}": f"{flips[(s, i, 'up')]} up, "
              f"{flips[(s, i, 'down')]} down of {total[(s, i)]}" for s, i in sorted(total)})


if __name__ == "__main__":
    main(sys.argv[1:])
