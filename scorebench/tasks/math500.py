"""``math500``: the MATH benchmark with the PRM800K splits the SCoRe paper uses.

test() is MATH500 (500 problems), train() the other 12,000 (7,500 MATH train + 4,500 MATH test problems); ids are
the original MATH file paths (``unique_id``). Grading: the last ``\\boxed{}`` of the response against the gold
answer, via math-verify plus guards, in worker processes (``scorebench.grading.math``). No box means wrong.
"""
from __future__ import annotations

from ..grading.math import extract_answer, grade_many, grade_response
from ..registry import TASKS
from .base import DataError, Task, read_jsonl_gz

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""Appended to every problem (the common MATH zero-shot instruction)."""

TEST_FILE = "math500_test.jsonl.gz"
TRAIN_FILE = "math_train.jsonl.gz"


def _load(name: str) -> list[dict]:
    rows = read_jsonl_gz(name)
    out, seen = [], set()
    for i, r in enumerate(rows, 1):
        for key in ("problem", "answer", "unique_id"):
            if not isinstance(r.get(key), str):
                raise DataError(f"{name}: row {i} has no string field {key!r}")
        if r["unique_id"] in seen:
            raise DataError(f"{name}: row {i} repeats id {r['unique_id']!r}")
        seen.add(r["unique_id"])
        out.append({"id": r["unique_id"], **r})
    return out


@TASKS.register("math500")
class Math500(Task):
    kind = "math"
    max_new_tokens = 512
    description = "MATH500 test / 12k MATH train (PRM800K splits); boxed answers graded with math-verify"

    def __init__(self, grading: str = "strict") -> None:
        """``grading``: "strict" (an attempt cut by the token cap is wrong: ``Task.grade``) or "lax" (graded on the
        text it has, the rule of runs before strict grading)."""
        if grading not in ("strict", "lax"):
            raise ValueError(f"{self.name}: grading must be strict or lax, got {grading!r}")
        self.grading = grading
        self._test: list[dict] | None = None
        self._train: list[dict] | None = None

    def test(self) -> list[dict]:
        if self._test is None:
            self._test = _load(TEST_FILE)
        return list(self._test)

    def train(self) -> list[dict]:
        if self._train is None:
            self._train = _load(TRAIN_FILE)
        return list(self._train)

    def prompt(self, example: dict) -> str:
        return f"{example['problem']}\n\n{INSTRUCTION}"

    def meta(self, example: dict) -> dict:
        return {"subject": example.get("subject"), "level": example.get("level")}

    def extract(self, response: str):
        return extract_answer(response or "")

    def evaluate(self, example: dict, response: str) -> dict:
        return grade_response(response, example["answer"])

    def evaluate_batch(self, examples: list[dict], responses: list[str], progress: bool = False) -> list[dict]:
        if len(examples) != len(responses):
            raise ValueError(f"{self.name}: {len(examples)} examples but {len(responses)} responses")
        results = grade_many([(r, ex["answer"]) for ex, r in zip(examples, responses)], progress=progress,
                             desc=f"{self.name}: grading")
        out = []
        for res in results:
            res = dict(res)
            res["reward"] = float(res["correct"])
            out.append(res)
        return out
