"""A task as a plugin: "is N even or odd?", graded by the last 'even'/'odd' in the response.

A task is a ``Task`` subclass with its splits, its prompt, ``extract`` (the answer the grader reads) and
``evaluate`` (which reuses ``extract``); the entry point in pyproject.toml makes ``--task parity`` work.
"""
import random
import re

from scorebench.tasks.base import Task


class Parity(Task):
    kind = "math"
    max_new_tokens = 32
    description = "plugin example: is N even or odd?"

    def __init__(self, n_train: int = 200, n_test: int = 20, seed: int = 0):
        rng = random.Random(seed)
        nums = rng.sample(range(10, 10_000), n_train + n_test)
        self._train = [{"id": f"train/{i}", "n": n} for i, n in enumerate(nums[:n_train])]
        self._test = [{"id": f"test/{i}", "n": n} for i, n in enumerate(nums[n_train:])]

    def train(self):
        return list(self._train)

    def test(self):
        return list(self._test)

    def prompt(self, example):
        return f"Is {example['n']} even or odd? Answer with one word."

    def extract(self, response):
        found = re.findall(r"\b(even|odd)\b", response.lower())
        return found[-1] if found else None

    def evaluate(self, example, response):
        pred = self.extract(response)
        return {"correct": pred == ("even" if example["n"] % 2 == 0 else "odd"), "pred": pred}
