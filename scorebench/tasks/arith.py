"""``arith``: procedurally generated integer word problems — the CPU-scale task.

Why it exists: a 135M model scores near zero on MATH500, so no self-correction signal can be measured there on
CPU. This task keeps the paper's setting (a problem, a verifiable final answer, binary reward) at a difficulty
the embedded model solves part of the time, so Δ, i→c and c→i are measurable and trainable on CPU.

Problems are a chain of ``steps`` small updates to one quantity ("Mia has 7 pens. She buys 4 more. She gives
away 3. How many pens does Mia have now?"), operands in [1, max_operand], never negative. The train and test
splits come from different seeds and share no problem text. Grading (``grading="strict"``, the default) is exact
and counts only finished attempts: an attempt stopped by the token cap is wrong (``Task.grade``), and a finished
one is right when its final answer equals the gold — the number after the last ``####`` (the model's GSM8K habit),
else in the last ``\\boxed{}``, else after the last "the answer is" (the value an equation there ends on: "the
answer is 5 + 3 = 8" is 8), else the last number of the text (a one-sentence answer, "Max has 8 + 5 = 13 pens
now.", is a right answer to "Answer with the final number."). Step labels
("(Step 2)") are not answers; "7.0" is 7; "1,200" is 1200 but "1,2" is a list whose last number is 2.
``grading="lax"`` is the rule runs used before: the last boxed or last integer of whatever text there is, cut or not.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..grading.math import last_boxed
from ..registry import TASKS
from .base import Task

NAMES = ["Mia", "Noah", "Ava", "Liam", "Emma", "Leo", "Zoe", "Sam", "Ivy", "Max", "Lily", "Ben"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "coins", "cards", "shells", "cookies", "stamps"]
ADD = ["{s} buys {n} more.", "{s} finds {n} more.", "A friend gives {o} {n} more.", "{s} gets {n} more."]
SUB = ["{s} gives away {n}.", "{s} loses {n}.", "{s} eats {n}.", "{s} sells {n}."]
INSTRUCTION = "Answer with the final number."

_INT = re.compile(r"-?\d[\d,]*")  # the lax rule's number
_NUM = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?")
"""A number: digits with an optional decimal part; commas only as thousands separators ("1,200"), so "1,2" is
two numbers; a minus only where no digit precedes it ("5-3" is 5 and 3)."""
_LABEL = re.compile(r"(?:step|part|case)\s*$", re.IGNORECASE)
_ANSWER_IS = re.compile(r"the\s+(?:final\s+)?answer\s+is", re.IGNORECASE)
_EQUATION = re.compile(r"[\s:$]*(?:-?[\d,.]+\s*[-+*/×x÷]\s*)+-?[\d,.]+(?:\s*=\s*-?[\d,.]+)+")
"""An equation right after "the answer is" ("5 + 3 = 8"): its answer is the value it ends on, not its first
operand (fifth session: 9% of a trained arith-mix policy's attempts were of this form, read as their first
operand)."""
GRADINGS = ("strict", "lax")


@dataclass
class ArithConfig:
    steps: int = 1
    """Number of updates after the starting amount (1 = one addition or subtraction)."""
    max_operand: int = 10
    """Largest starting amount and update."""
    n_train: int = 5000
    """Size of the train split."""
    n_test: int = 500
    """Size of the test split."""
    seed: int = 0
    """Seed of the generator; the test split uses seed + 1,000,003 so splits differ."""
    hard_fraction: float = 0.0
    """Fraction of problems with ``steps + 1`` updates (a mixture of difficulties: the easy ones carry a learning
    signal, the hard ones keep the first attempt below the ceiling, so self-correction has room)."""
    grading: str = "strict"
    """"strict" (finished attempts only, final-answer extraction) or "lax" (the earlier rule, for the record)."""


def _number(s: str) -> int | float:
    x = float(s.replace(",", ""))
    return int(x) if x.is_integer() else x


def _numbers(text: str) -> list[str]:
    """The numbers of ``text`` in order, without step labels."""
    return [m.group() for m in _NUM.finditer(text) if not _LABEL.search(text[:m.start()])]


def extract_final(response: str) -> int | float | None:
    """The strict rule's final answer (module docstring); None when the response states no number."""
    if "####" in response:
        found = _numbers(response.rsplit("####", 1)[1])
        return _number(found[0]) if found else None
    boxed = last_boxed(response)
    if boxed is not None:
        found = _numbers(boxed)
        return _number(found[-1]) if found else None
    said = list(_ANSWER_IS.finditer(response))
    if said:
        tail = response[said[-1].end():]
        equation = _EQUATION.match(tail)
        found = _numbers(equation.group().rsplit("=", 1)[1] if equation else tail)
        if found:
            return _number(found[0])
    found = _numbers(response)
    return _number(found[-1]) if found else None


def extract_answer(response: str) -> int | None:
    """The lax rule: the last ``\\boxed{}`` integer if any, else the last integer in the text; None when none."""
    boxed = last_boxed(response)
    text = boxed if boxed is not None else response
    found = _INT.findall(text)
    if not found:
        return None
    try:
        return int(found[-1].replace(",", ""))
    except ValueError:
        return None


def make_problem(rng: random.Random, steps: int, max_operand: int, hard_fraction: float = 0.0) -> dict:
    if hard_fraction and rng.random() < hard_fraction:  # no draw at 0: the plain task's problems are unchanged
        steps += 1
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    pron = "She" if name in ("Mia", "Ava", "Emma", "Zoe", "Ivy", "Lily") else "He"
    obj = "her" if pron == "She" else "him"
    value = rng.randint(1, max_operand)
    parts = [f"{name} has {value} {item}."]
    for k in range(steps):
        if value > 1 and rng.random() < 0.5:
            n = rng.randint(1, min(max_operand, value))
            parts.append(rng.choice(SUB).format(s=pron, n=n, o=obj))
            value -= n
        else:
            n = rng.randint(1, max_operand)
            parts.append(rng.choice(ADD).format(s=pron, n=n, o=obj))
            value += n
    parts.append(f"How many {item} does {name} have now?")
    return {"problem": " ".join(parts), "answer": value, "steps": steps}


@TASKS.register("arith")
class Arith(Task):
    kind = "math"
    max_new_tokens = 128
    description = "integer word problems of adjustable difficulty (CPU-scale; the embedded model solves some)"

    def __init__(self, steps: int = ArithConfig.steps, max_operand: int = ArithConfig.max_operand,
                 n_train: int = ArithConfig.n_train, n_test: int = ArithConfig.n_test, seed: int = ArithConfig.seed,
                 hard_fraction: float = ArithConfig.hard_fraction, grading: str = ArithConfig.grading):
        self.cfg = ArithConfig(steps, max_operand, n_train, n_test, seed, hard_fraction, grading)
        if grading not in GRADINGS:
            raise ValueError(f"{self.name}: grading must be one of {', '.join(GRADINGS)}, got {grading!r}")
        self.grading = grading
        if steps < 1 or max_operand < 1:
            raise ValueError(f"{self.name}: steps and max_operand must be >= 1")
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"{self.name}: hard_fraction must be in [0, 1], got {hard_fraction}")
        self._test = self._generate("test", n_test, seed + 1_000_003)
        banned = {ex["problem"] for ex in self._test}
        self._train = self._generate("train", n_train, seed, banned)

    def _generate(self, split: str, n: int, seed: int, banned: set | None = None) -> list[dict]:
        rng, seen, out = random.Random(seed), set(banned or ()), []
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise ValueError(f"arith: cannot make {n} distinct {split} problems at this difficulty")
            p = make_problem(rng, self.cfg.steps, self.cfg.max_operand, self.cfg.hard_fraction)
            if p["problem"] in seen:
                continue
            seen.add(p["problem"])
            out.append({"id": f"{split}/{len(out)}", **p})
        return out

    def train(self):
        return list(self._train)

    def test(self):
        return list(self._test)

    def prompt(self, example):
        return f"{example['problem']} {INSTRUCTION}"

    def meta(self, example):
        return {"steps": example["steps"]}

    def extract(self, response):
        return extract_final(response) if self.grading == "strict" else extract_answer(response)

    def evaluate(self, example, response):
        """Text only; ``Task.grade`` adds the finished-attempt rule under strict grading."""
        pred = self.extract(response)
        return {"correct": pred is not None and pred == int(example["answer"]), "pred": pred}

    def describe(self):
        return {"task": self.name, "kind": self.kind, **self.cfg.__dict__}


@TASKS.register("arith-mix")
class ArithMix(Arith):
    """``arith`` with half of the problems one update longer: the CPU setting for results about Δ.

    Why: on plain ``arith`` (one update) CPU SCoRe learns but the trained first attempt saturates (~90%), leaving
    nothing to correct; on two updates it learns nothing (no reward to learn from). Mixed, the one-update half
    carries the learning signal and the two-update half keeps the first attempt below the ceiling. Calibrated
    on train problems only (results/calibration-arith.md)."""
    description = "arith with hard_fraction=0.5 (half the problems one update longer): headroom for Δ on CPU"

    def __init__(self, steps: int = ArithConfig.steps, max_operand: int = ArithConfig.max_operand,
                 n_train: int = ArithConfig.n_train, n_test: int = ArithConfig.n_test, seed: int = ArithConfig.seed,
                 hard_fraction: float = 0.5, grading: str = ArithConfig.grading):
        super().__init__(steps, max_operand, n_train, n_test, seed, hard_fraction, grading)
