"""HumanEval / MBPP / MBPP-R tasks: data, prompts, code extraction and sandboxed grading."""
from __future__ import annotations

import random

import pytest

from scorebench.protocol import CODE_SELF_CORRECTION_INSTRUCTION
from scorebench.registry import TASKS
from scorebench.tasks.code import MBPP, MBPPR, HumanEval, extract_code


@pytest.fixture(scope="module")
def he():
    return HumanEval()


def test_registered():
    items = TASKS._items  # registered on import (the full registry also imports other engineers' modules)
    assert items["humaneval"] is HumanEval and items["mbpp"] is MBPP and items["mbpp-r"] is MBPPR
    for cls in (HumanEval, MBPP, MBPPR):
        assert cls.kind == "code" and cls.correction_instruction == CODE_SELF_CORRECTION_INSTRUCTION


@pytest.mark.parametrize("resp, want", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1"),
    ("text\n```python\ndef f(): return 0\n```\nmore\n```python\ndef f(): return 2\n```\nbye", "def f(): return 2"),
    ("```py\nx = 1\n```", "x = 1"),
    ("```Python3\nx = 3\n```", "x = 3"),
    ("```\ndef g(): pass\n```", "def g(): pass"),
    ("```python\nA=1\n```\n```text\nnot code\n```", "A=1"),          # a python block wins over a later one
    ("def h():\n    return 5", "def h():\n    return 5"),              # no fence: the whole text
    ("Here:\n```python\ndef k():\n    return 9\n", "def k():\n    return 9"),  # unterminated fence
    ("    return 1\n", "    return 1"),                               # body-only keeps its indentation
])
def test_extract_code(resp, want):
    assert extract_code(resp) == want


def test_humaneval_data_and_prompt(he):
    ex = he.test()
    assert len(ex) == 164 and ex[0]["id"] == "HumanEval/0" and len({e["id"] for e in ex}) == 164
    for e in ex:
        p = he.prompt(e)
        assert e["prompt"].strip() in p and "```python" in p
        assert "def check(candidate)" not in p and e["test"].strip() not in p  # tests never shown
    with pytest.raises(NotImplementedError, match="no train split"):
        he.train()


def test_all_164_canonical_solutions_pass(he):
    ex = he.test()
    full = [f"Here is the code:\n```python\n{e['prompt']}{e['canonical_solution']}\n```\n" for e in ex]
    res = he.evaluate_batch(ex, full)
    bad = [(e["id"], r["status"], r["error"]) for e, r in zip(ex, res) if not r["correct"]]
    assert not bad
    assert all(r["reward"] == 1.0 for r in res)


def test_humaneval_variants(he):
    ex = {e["id"]: e for e in he.test()}
    e0 = ex["HumanEval/0"]
    body = e0["canonical_solution"]
    # body-only completion (the prompt is prepended), a bare function without imports (the prompt's imports
    # and helpers come first), wrong code, a function under a different name, and empty output
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"
    bare = ("```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + body + "\n```")
    other = "```python\ndef solve(numbers, threshold):\n    return False\n```"
    res = he.evaluate_batch([e0] * 5, [body, bare, wrong, other, ""])
    assert [r["correct"] for r in res] == [True, True, False, False, False]
    # a helper defined only in the prompt (HumanEval/38 decode_cyclic uses encode_cyclic) stays available
    e38 = ex["HumanEval/38"]
    ans = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    assert he.evaluate(e38, ans)["correct"]
    # an early exit in the answer cannot pass the hidden tests
    cheat = "```python\nimport sys\ndef has_close_elements(numbers, threshold):\n    return True\nsys.exit(0)\n```"
    assert not he.evaluate(e0, cheat)["correct"]


@pytest.fixture(scope="module")
def mbpp():
    return MBPP()


def test_mbpp_splits_and_prompt(mbpp):
    assert len(mbpp.test()) == 500 and len(mbpp.train()) == 374 and len(mbpp.validation()) == 90
    assert {r["task_id"] for r in mbpp.test()} == set(range(11, 511))
    assert {r["task_id"] for r in mbpp.train()} == set(range(601, 975))
    e = mbpp.test()[0]
    p = mbpp.prompt(e)
    assert e["text"] in p and e["test_list"][0] in p and e["test_list"][1] not in p and "```python" in p


def test_mbpp_canonical_sample_passes(mbpp):
    rows = {r["task_id"]: r for r in mbpp._load()}
    ids = sorted(random.Random(0).sample(range(11, 975), 40)) + [367, 927]  # + the two with test_setup_code
    ex = [rows[i] for i in ids]
    res = mbpp.evaluate_batch(ex, [f"```python\n{r['code']}\n```" for r in ex])
    assert [e["id"] for e, r in zip(ex, res) if not r["correct"]] == []
    wrong = mbpp.evaluate_batch(ex[:5], ["```python\ndef nothing():\n    pass\n```"] * 5)
    assert not any(r["correct"] for r in wrong)


def test_mbpp_r_shipped_file():
    t = MBPPR()
    ex = t.test()
    assert len(ex) > 400 and len({e["id"] for e in ex}) == len(ex)
    assert all(11 <= e["task_id"] <= 510 for e in ex)
    for e in ex:
        ga = e["given_attempt"]
        assert ga.startswith("```python\n") and ga.rstrip().endswith("```")
        assert extract_code(ga) == e["attempt"] and e["attempt"] != e["code"]
    with pytest.raises(NotImplementedError):
        t.train()
    assert t.prompt(ex[0]) == MBPP().prompt(ex[0])


def test_mbpp_r_given_attempts_fail_and_references_pass():
    t = MBPPR()
    ex = random.Random(1).sample(t.test(), 20)
    res = t.evaluate_batch(ex + ex, [e["given_attempt"] for e in ex] + [e["code"] for e in ex])
    given, ref = res[:20], res[20:]
    assert not any(r["correct"] for r in given), [e["id"] for e, r in zip(ex, given) if r["correct"]]
    assert all(r["correct"] for r in ref), [e["id"] for e, r in zip(ex, ref) if not r["correct"]]
