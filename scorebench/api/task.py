"""The Task base class (the nanochat pattern): data splits, a prompt, and a grader.

``reward()`` reuses ``evaluate()`` so that the number training optimizes is the number evaluation reports.
"""
from __future__ import annotations

from tqdm.auto import tqdm

from .protocol import SELF_CORRECTION_INSTRUCTION


class Task:
    name: str = "task"
    kind: str = "math"
    """"math" (answer checking) or "code" (unit tests)."""
    description: str = ""
    correction_instruction: str = SELF_CORRECTION_INSTRUCTION
    max_new_tokens: int = 256
    """Default tokens per attempt (``--max-new-tokens`` overrides)."""
    grading: str = "lax"
    """How an attempt cut by the token cap counts (``protocol.grade``): "strict" = wrong, whatever its text holds (math tasks: a cut
    attempt's last number is an intermediate step, not an answer); "lax" = graded on the text it has (code tasks,
    whose graders already need a whole program)."""

    def train(self) -> list[dict]:
        """Training examples; each a dict with at least ``id``."""
        raise NotImplementedError(f"task {self.name!r} has no train split")

    def test(self) -> list[dict]:
        """Test examples; each a dict with at least ``id``."""
        raise NotImplementedError

    def prompt(self, example: dict) -> str:
        """The turn-1 user message for an example."""
        raise NotImplementedError

    def meta(self, example: dict) -> dict:
        """Metadata kept on the episode for breakdowns (e.g. subject and level)."""
        return {}

    def extract(self, response: str):
        """The answer the grader reads from a response (a number, a boxed expression, a program), or None: public
        so that inference-time methods (a vote over attempts) compare answers the way the grader does."""
        raise NotImplementedError(f"task {self.name!r} does not extract answers")

    def evaluate(self, example: dict, response: str) -> dict:
        """Grade one response: a dict with at least ``correct`` (bool); may add the extracted answer."""
        raise NotImplementedError

    def reward(self, example: dict, response: str) -> float:
        return float(self.evaluate(example, response)["correct"])

    def evaluate_batch(self, examples: list[dict], responses: list[str], progress: bool = False) -> list[dict]:
        """Grade many responses; returns dicts with ``reward`` (float in [0, 1]) plus ``evaluate``'s keys.

        Code tasks override this to grade in parallel in the sandbox.
        """
        out = []
        for ex, r in tqdm(list(zip(examples, responses)), desc=f"{self.name}: grading", disable=not progress,
                          leave=False):
            res = dict(self.evaluate(ex, r))
            res["reward"] = float(res["correct"])
            out.append(res)
        return out

    def describe(self) -> dict:
        return {"task": self.name, "kind": self.kind, "grading": self.grading}

