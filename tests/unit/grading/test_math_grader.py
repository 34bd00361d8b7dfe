"""The MATH grader (scorebench.grading.math) and the math500 task. Fast: ~10-20 s, most of it one worker start
and the 500-answer math-verify self-check."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from scorebench.grading.math import (_POOL, extract_answer, grade_many, grade_response, is_equiv, last_boxed,
                                     normalize)
from scorebench.tasks.base import read_jsonl_gz

ROWS = read_jsonl_gz("math500_test.jsonl.gz")


# ---------------------------------------------------------------------------------------------- MATH500 golds

def test_every_gold_boxed_in_a_sentence_grades_correct():
    pairs = [(f"Putting it together, the answer is $\\boxed{{{r['answer']}}}$.", r["answer"]) for r in ROWS]
    out = grade_many(pairs)
    bad = [(r["answer"], o) for r, o in zip(ROWS, out) if not o["correct"]]
    assert len(out) == 500 and not bad
    assert [o["pred"] for o in out] == [r["answer"] for r in ROWS]


def test_every_gold_against_itself_through_math_verify():
    """The same self-check with the string fast path off: every gold parses and verifies against itself in a
    worker (catches golds that math-verify mis-parses)."""
    _POOL.ensure(2)
    with ThreadPoolExecutor(2) as ex:
        res = list(ex.map(lambda a: _POOL.call(a, a, 10.0, False), [r["answer"] for r in ROWS]))
    assert [r["answer"] for r, ok in zip(ROWS, res) if ok is not True] == []


def test_every_gold_against_its_full_solution_text():
    out = grade_many([(r["solution"], r["answer"]) for r in ROWS])
    assert [(r["unique_id"], o) for r, o in zip(ROWS, out) if not o["correct"]] == []


# ---------------------------------------------------------------------------------------------- equivalences

EQUIVALENT = [
    ("0.5", "\\frac12"),
    ("\\frac{1}{2}", "\\frac12"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("\\tfrac38", "\\dfrac 3 8"),
    ("3", "x=3"),
    ("x=3", "3"),
    ("x = 5", "x=5"),
    ("30", "30^\\circ"),
    ("30^{\\circ}", "30^\\circ"),
    ("5", "\\$5"),
    ("32348", "\\$32,\\!348"),
    ("18.9", "\\$18.90"),
    ("10080", "10,\\!080"),
    ("1\\,000", "1000"),
    ("11111111100", "11,\\! 111,\\! 111,\\! 100"),
    ("A", "\\text{(A)}"),
    ("(C)", "\\text{(C)}"),
    ("\\textbf{(E)}", "\\text{(E)}"),
    ("\\sqrt{12}", "2\\sqrt{3}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
    ("\\frac{9}{5}", "1\\frac{4}{5}"),
    ("137.5", "137 \\frac{1}{2}"),
    ("0.333333", "\\frac13"),  # a float agreeing to 6 decimals
    ("5.", "5"),  # a trailing period
    ("10", "10\\%"),
    ("\\{2, 1\\}", "\\{1,2\\}"),  # sets: order does not matter
    ("7, 5, 3", "3, 5, 7"),  # a list gold: order does not matter
    ("1+\\sqrt{19}, 1-\\sqrt{19}", "1 \\pm \\sqrt{19}"),
    ("-2, 1+\\sqrt5, 1-\\sqrt5", "\\{1\\pm\\sqrt{5},-2\\}"),
    ("-12 \\text{ or } -2", "-2 \\text{ or } -12"),  # the gold itself is a list
    ("(8, -2)", "(8,-2)"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("(-\\infty,0]", "(-\\infty, 0]"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2) \\cup (3, \\infty)"),
    ("[-2,7]", "x \\in [-2,7]"),
    ("\\begin{pmatrix}-2\\\\-14\\\\-7\\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}"),
    ("2x+3", "y = 2x + 3"),
    ("ab+2a+5b+10", "(a+5)(b+2)"),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x"),
    ("Evelyn", "\\text{Evelyn}"),
    ("\\emptyset", "\\varnothing"),
    ("2+6i", "2 + 6i"),
    ("\\log_2 8", "3"),  # a subscript digit is not a juxtaposed number
]

NOT_EQUIVALENT = [
    ("1000001", "1000000"),  # distinct large integers
    ("1000000.4", "1000000"),
    ("2^{100}+1", "2^{100}"),
    ("\\frac{2^{100}+1}{2^{100}}", "1"),
    ("\\frac{1}{2^{98}}", "\\frac{1}{2^{99}}"),  # tiny values: math-verify's chop=True says equal (MV#14)
    ("\\frac{1}{3\\cdot 2^{2006}}", "\\frac{2^{2005}+1}{3\\cdot 2^{2006}}"),  # MV#14
    ("0.0000002", "0.0000001"),  # 6-decimal rounding says equal (MV#21)
    ("1.23456788", "1.23456789"),
    ("0.10000001", "0.1"),
    ("0.333", "\\frac13"),  # a 3-decimal approximation is not the exact answer MATH asks for
    ("0.33", "\\frac13"),
    ("3.14", "\\pi"),
    ("(2,1)", "(1,2)"),  # ordered pairs: order matters
    ("(1,-16,43,-4)", "(1,-16,-4,43)"),
    ("(1,2]", "(1,2)"),  # interval endpoints
    ("[1,2]", "(1,2)"),
    ("(-\\infty,2]", "(-\\infty,2)"),
    ("\\{1,2\\}", "(1,2)"),  # a set is neither an interval nor an ordered pair (math-verify says equal)
    ("(1,2)", "\\{1,2\\}"),
    ("\\{8,-2\\}", "(8,-2)"),
    ("2 \\text{ or } 3", "2"),  # hedges
    ("2 or 3", "2"),
    ("2 \\text{ (or 3)}", "2"),  # math-verify reads this as 2
    ("2, 3", "2"),  # several candidates vs a single value
    ("\\{2, 3\\}", "2"),
    ("x=2, x=3", "2"),
    ("\\pm 2", "2"),
    ("2", "\\pm 2"),
    ("2 \\quad 3", "5"),  # juxtaposed numbers: math-verify reads a sum (5)
    ("2 3", "5"),
    ("1+\\sqrt{19}", "1 \\pm \\sqrt{19}"),
    ("-2, 1", "1"),
    ("", "2"),
    ("2", ""),
    ("\\text{west}", "\\text{east}"),
    ("\\text{(D)}", "\\text{(C)}"),
    ("2k+1", "2k+2"),
    ("\\tan x", "\\cot x"),
    ("1-2i", "1+2i"),
    ("-2", "2"),
]


@pytest.mark.parametrize("pred,gold", EQUIVALENT)
def test_equivalent(pred, gold):
    assert is_equiv(pred, gold), (pred, gold)


@pytest.mark.parametrize("pred,gold", NOT_EQUIVALENT)
def test_not_equivalent(pred, gold):
    assert not is_equiv(pred, gold), (pred, gold)


# ---------------------------------------------------------------------------------------------- extraction

def test_last_boxed_nested_braces_and_variants():
    assert last_boxed("so $\\boxed{\\frac{a^{2}}{\\sqrt{b_{1}}}}$.") == "\\frac{a^{2}}{\\sqrt{b_{1}}}"
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"  # escaped braces do not count
    assert last_boxed("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}") == "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("the answer is $\\boxed 5$.") == "5"
    assert last_boxed("\\boxed{\\boxed{5}}") == "5"
    assert last_boxed("\\boxed{}") == ""
    assert last_boxed("no box here, 42") is None
    assert last_boxed("\\boxed{3} and then \\boxed{4") == "3"  # a truncated box is skipped


def test_last_boxed_wins():
    resp = "First I thought $\\boxed{3}$, but that was wrong. Redoing it, the answer is $\\boxed{4}$."
    assert last_boxed(resp) == "4"
    assert grade_response(resp, "4") == {"correct": True, "pred": "4"}
    assert grade_response(resp, "3")["correct"] is False


def test_hedged_boxes():
    assert extract_answer("so $\\boxed{2}$ or $\\boxed{3}$.") == "2 \\text{ or } 3"
    assert grade_response("so $\\boxed{2}$ or $\\boxed{3}$.", "2")["correct"] is False
    assert grade_response("$\\boxed{2}$, $\\boxed{3}$", "2")["correct"] is False
    assert grade_response("$\\boxed{2}$ and $\\boxed{3}$", "2, 3")["correct"] is True
    # the same value in two forms is not a hedge (MATH500's own solution for test/prealgebra/1761 does this)
    assert grade_response("$\\boxed{15\\frac{39}{40}},$ or $\\boxed{\\frac{639}{40}}$ inches", "\\frac{639}{40}")[
        "correct"] is True


def test_no_box_and_empty_box_are_wrong():
    assert grade_response("The answer is 5.", "5") == {"correct": False, "pred": None}
    assert grade_response("The answer is $\\boxed{}$.", "5")["correct"] is False
    assert grade_response("", "5") == {"correct": False, "pred": None}


def test_normalize_keeps_distinct_values_distinct():
    assert normalize("2 3") != normalize("23")
    assert normalize("\\left( 1, 2 \\right)") == normalize("(1,2)")


# ---------------------------------------------------------------------------------------------- bounded time

PATHOLOGICAL = "\\dfrac{5^{\\left(5^{\\left(5^{\\left(5^5\\right)}\\right)} - 4\\right)} - 5}{16}"  # MV#65


def test_pathological_input_is_bounded_off_the_main_thread():
    out = {}

    def run():
        t = time.monotonic()
        out["res"] = grade_response(f"so $\\boxed{{{PATHOLOGICAL}}}$", "1", timeout_s=2.0)
        out["dt"] = time.monotonic() - t

    th = threading.Thread(target=run)
    th.start()
    th.join(30)
    assert not th.is_alive()
    assert out["res"]["correct"] is False and out["dt"] < 10
    # the pool recovered: the next call works and is fast
    t = time.monotonic()
    assert is_equiv("0.5", "\\frac{1}{2}")
    assert time.monotonic() - t < 10


# ---------------------------------------------------------------------------------------------- the task

def test_math500_task():
    from scorebench import get_task
    from scorebench.tasks.math500 import INSTRUCTION
    task = get_task("math500")
    assert task.kind == "math"
    test = task.test()
    assert len(test) == 500 and len({ex["id"] for ex in test}) == 500
    assert test[0]["id"] == ROWS[0]["unique_id"]
    train = task.train()
    assert len(train) == 12000 and not ({ex["id"] for ex in train} & {ex["id"] for ex in test})
    ex = test[0]
    assert ex["problem"] in task.prompt(ex) and INSTRUCTION in task.prompt(ex)
    assert task.meta(ex) == {"subject": ex["subject"], "level": ex["level"]}
    assert task.evaluate(ex, f"... $\\boxed{{{ex['answer']}}}$")["correct"] is True
    responses = [f"$\\boxed{{{e['answer']}}}$" if i % 2 == 0 else "I give up." for i, e in enumerate(test[:20])]
    res = task.evaluate_batch(test[:20], responses, progress=True)
    assert [r["reward"] for r in res] == [1.0 if i % 2 == 0 else 0.0 for i in range(20)]
    assert all(set(r) >= {"correct", "pred", "reward"} for r in res)


def test_a_stuck_worker_is_killed_and_replaced():
    """A worker that cannot be interrupted (a C-level hang; simulated with SIGSTOP) is killed at the hard
    deadline, and the pool starts a fresh one."""
    import os
    import signal
    w = _POOL.acquire()
    try:
        assert w.call("1", "1", 5.0) is True  # ready
        os.kill(w.proc.pid, signal.SIGSTOP)
        t = time.monotonic()
        assert w.call("x^2", "y^3", 0.5) is None
        assert time.monotonic() - t < 5 and not w.alive()
    finally:
        _POOL.release(w)
    assert is_equiv("x^2+1", "1+x^2")


def test_bench_math_grading_right_and_wrong_pairs():
    """The bench's math row: reference solutions graded against their own gold are all right; against the next
    problem's gold all wrong, and every one of those goes through math-verify (not the string fast path)."""
    from scorebench.bench import bench_math_grading
    r = bench_math_grading(12)
    assert r["n"] == 12 and r["verified"] == 6 and r["correct"] == 6

