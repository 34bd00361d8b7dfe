"""The CPU-scale task: seeded, disjoint splits, answers that follow from the text, exact grading."""
import re

from scorebench.tasks.arith import Arith, extract_answer


def _solve(problem: str) -> int:
    value = int(re.search(r"has (\d+)", problem).group(1))
    for verb, n in re.findall(r"(buys|finds|gives \w+|gets|loses|eats|sells) (\d+)", problem):
        value += -int(n) if verb in ("loses", "eats", "sells", "gives away") else int(n)
    return value


def test_splits_are_seeded_disjoint_and_correct():
    a, b = Arith(steps=2, n_train=300, n_test=100), Arith(steps=2, n_train=300, n_test=100)
    assert a.test() == b.test() and a.train() == b.train()
    assert not {e["problem"] for e in a.test()} & {e["problem"] for e in a.train()}
    assert Arith(seed=1, n_train=10, n_test=10).test() != Arith(seed=0, n_train=10, n_test=10).test()
    for ex in a.test() + a.train():
        assert ex["answer"] >= 0 and _solve(ex["problem"]) == ex["answer"], ex["problem"]


def test_grading_last_integer_or_box():
    ex = {"answer": 12, "problem": "", "steps": 1}
    t = Arith(n_train=1, n_test=1)
    assert t.reward(ex, "7 + 5 = 12") == 1.0
    assert t.reward(ex, "The answer is 12. Then 3 more.") == 0.0  # the last integer counts
    assert t.reward(ex, "\\boxed{12} and later 3") == 1.0         # a box wins over later numbers
    assert t.reward(ex, "1,2") == 1.0 and extract_answer("no numbers") is None
    assert t.reward(ex, "-12") == 0.0


def test_extract_is_what_evaluate_grades():
    """Task.extract is public and evaluate() reads the answer through it (one rule for graders and plugins)."""
    from scorebench.registry import TASKS
    t = TASKS.get("arith")(n_train=1, n_test=1)
    ex = dict(t.test()[0], answer=7)
    for resp, want in [("so 3 + 4 = 7", 7), ("\\boxed{7} then 12", 7), ("no number", None), ("-3, then 1,200", 1200)]:
        assert t.extract(resp) == want and t.evaluate(ex, resp)["pred"] == want
    m = TASKS.get("math500")()
    assert m.extract("so \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and m.extract("none") is None
