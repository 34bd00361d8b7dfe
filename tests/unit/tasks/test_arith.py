"""The CPU-scale task: seeded, disjoint splits, answers that follow from the text, exact grading."""
import re

import pytest

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


def test_strict_grading_reads_the_final_answer():
    """The strict rule's extraction, on the model's habits and on the old extractor's misreadings."""
    ex = {"answer": 12, "problem": "", "steps": 1}
    t = Arith(n_train=1, n_test=1)
    for resp, want in [
        ("7 + 5 = 12", 1.0),
        ("Max has 7 + 5 = 12 pens now.", 1.0),               # a one-sentence answer
        ("The answer is 12. Then 3 more.", 1.0),            # "the answer is" wins over later numbers
        ("So, the final answer is 12 + 3 = 15.", 0.0),       # an equation's value, not its first operand
        ("So, the final answer is 9 + 3 = 12.", 1.0), ("The answer is: 4 x 3 = 12 apples", 1.0),
        ("The answer is 20 - 4 - 4 = 12 = 12.", 1.0), ("The answer is 12. 5 + 3 = 8", 1.0),
        ("\\boxed{12} and later 3", 1.0),                    # a box wins over later numbers
        ("7 + 5 = 12\n#### 12\nStep 3", 1.0),                # the number after the last ####
        ("#### 3\nso 12", 0.0),
        ("12.0", 1.0), ("\\boxed{12.0}", 1.0),                # the old extractor read 0
        ("12 apples (Step 2)", 1.0),                         # a step label is no answer (old: 2)
        ("1,2", 0.0), ("3,12", 1.0),                          # a list's last number (old: 12 and 312)
        ("12.5", 0.0), ("-12", 0.0), ("no numbers", 0.0),
    ]:
        assert t.reward(ex, resp) == want, resp
    assert Arith(n_train=1, n_test=1).extract("1,200 in all") == 1200


def test_lax_rule_is_the_old_one_for_the_record():
    ex = {"answer": 12, "problem": "", "steps": 1}
    t = Arith(n_train=1, n_test=1, grading="lax")
    assert t.reward(ex, "The answer is 12. Then 3 more.") == 0.0  # the last integer counts
    assert t.reward(ex, "1,2") == 1.0 and extract_answer("no numbers") is None
    assert t.reward(ex, "\\boxed{12.0}") == 0.0


def test_cut_attempts_are_wrong_under_strict_grading_only():
    """protocol.grade: an attempt stopped by the token cap counts as wrong (its text verdict kept as
    lax_correct); a finished one is graded on its text; lax grading ignores the cap."""
    from scorebench.protocol import grade
    t = Arith(n_train=5, n_test=5)
    ex = {"answer": 12, "problem": "", "steps": 1}
    out = grade(t, [ex, ex, ex], ["5 + 7 = 12", "5 + 7 = 12", "5 + 7 = 1"], [True, False, False])
    assert [r["reward"] for r in out] == [1.0, 0.0, 0.0]
    assert "cut" not in out[0] and out[1]["cut"] and out[1]["lax_correct"] and not out[2]["lax_correct"]
    lax = grade(Arith(n_train=5, n_test=5, grading="lax"), [ex, ex], ["5 + 7 = 12"] * 2, [True, False])
    assert [r["reward"] for r in lax] == [1.0, 1.0]
    assert Arith(n_train=5, n_test=5).describe()["grading"] == "strict"
    with pytest.raises(ValueError, match="grading"):
        Arith(grading="loose")


def test_extract_is_what_evaluate_grades():
    """Task.extract is public and evaluate() reads the answer through it (one rule for graders and plugins)."""
    from scorebench.registry import TASKS
    t = TASKS.get("arith")(n_train=1, n_test=1)
    ex = dict(t.test()[0], answer=7)
    for resp, want in [("so 3 + 4 = 7", 7), ("\\boxed{7} then 12", 7), ("no number", None), ("-3, then 1,200", 1200), ("7.0", 7)]:
        assert t.extract(resp) == want and t.evaluate(ex, resp)["pred"] == want
    m = TASKS.get("math500")()
    assert m.extract("so \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and m.extract("none") is None


def test_arith_mix_is_half_one_update_longer():
    """arith-mix (the task behind Tables 2 and 4): hard_fraction=0.5 makes about half the problems take steps + 1
    updates, answers still follow from the text; hard_fraction=0 draws exactly arith's problems."""
    from scorebench.tasks.arith import ArithMix
    mix = ArithMix(n_train=400, n_test=200)
    steps = [ex["steps"] for ex in mix.train() + mix.test()]
    assert set(steps) == {1, 2} and 0.42 < steps.count(2) / len(steps) < 0.58
    for ex in mix.test():
        assert _solve(ex["problem"]) == ex["answer"] and len(re.findall(r"\. ", ex["problem"])) == ex["steps"] + 1
    assert Arith(hard_fraction=0.0, n_train=50, n_test=20).test() == Arith(n_train=50, n_test=20).test()
    assert ArithMix(n_train=5, n_test=5).describe()["hard_fraction"] == 0.5
    with pytest.raises(ValueError, match="hard_fraction"):
        Arith(hard_fraction=1.5)
