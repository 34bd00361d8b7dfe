"""The kinds of arith mistakes, on hand-written attempts, and the i→c / c→i counts on hand-made episodes."""
import pytest

from scorebench.tasks.arith import Arith
from scorebench.tasks.arith_errors import chain, gold, kind, transitions

Q = "Ivy has 9 coins. She sells 9. A friend gives her 4 more. How many coins does Ivy have now? Answer with the final number."
P = "Ivy has 9 coins. She sells 2. A friend gives her 4 more. How many coins does Ivy have now? Answer with the final number."


def test_chain_and_gold_match_the_generator():
    assert chain(P) == (9, [-2, 4]) and gold(P) == 11
    task = Arith(steps=3, n_train=200, n_test=5)
    for ex in task.train():
        assert gold(task.prompt(ex)) == int(ex["answer"]), ex


@pytest.mark.parametrize("response, finished, pred, want", [
    ("Ivy has 9 coins. 9 - 2 = 7", False, 7, "cut"),
    ("She has some coins left.", True, None, "no answer"),
    ("9 - 2 = 6. 6 + 4 = 10. The answer is 10.", True, 10, "slip"),
    ("9 + 2 = 11. 11 + 4 = 15. The answer is 15.", True, 15, "wrong operation"),
    ("9 - 2 = 7. 7 + 5 = 12. The answer is 12.", True, 12, "invented number"),
    ("9 - 2 = 7. 7 + 4 = 11. The answer is 12.", True, 12, "other"),
    ("Ivy has 9 coins. She sells 2.", True, 2, "incomplete"),    # restates the problem and stops
    ("Ivy has 9 coins.", True, 9, "incomplete"),
    ("Ivy has 13 coins.", True, 13, "other"),                    # a number the problem does not state
])
def test_kind_of_a_wrong_attempt(response, finished, pred, want):
    assert kind(P, response, finished, pred) == want


def _ep(r1, r2, y1, y2, f1="stop", f2="stop", p1=None, p2=None):
    return {"turns": [{"prompt": P, "response": y1, "reward": r1, "finish_reason": f1, "info": {"pred": p1}},
                      {"prompt": "fix it", "response": y2, "reward": r2, "finish_reason": f2, "info": {"pred": p2}}]}


def test_transitions_counts_fixes_breaks_and_luck():
    eps = [_ep(0, 1, "9 + 2 = 11. 11 + 4 = 15.", "9 - 2 = 7. 7 + 4 = 11.", p1=15, p2=11),  # fix of a wrong op
           _ep(0, 1, "9 - 2 = 7. 7 +", "9 - 2 = 7. 7 + 4 = 11.", f1="length", p1=7, p2=11),  # fix of a cut one
           _ep(0, 1, "12", "9 - 3 = 6. 6 + 4 = 11", p1=12, p2=11),  # right by luck: 9 - 3 is invented
           _ep(1, 0, "9 - 2 = 7. 7 + 4 = 11.", "9 - 2 = 7. 7 + 4 = 10.", p1=11, p2=10),  # broken by a slip
           _ep(1, 1, "11", "11", p1=11, p2=11), _ep(0, 0, "3", "3", p1=3, p2=3),
           _ep(0, 1, "Ivy has 9 coins.", "She has 4 more.", p1=9, p2=4)]  # restated, then right by luck (gold 4)
    t = transitions([{**e, "turns": [{**e["turns"][0], "prompt": Q}, e["turns"][1]]} if i == 6 else e
                     for i, e in enumerate(eps)])
    assert t["episodes"] == 7 and t["i2c"] == 4 and t["c2i"] == 1 and t["i2c_lucky"] == 2
    assert t["i2c_by_kind"]["incomplete"] == 1
    assert t["i2c_by_kind"]["wrong operation"] == 1 and t["i2c_by_kind"]["cut"] == 1
    assert t["i2c_by_kind"]["other"] == 1 and t["c2i_by_kind"]["slip"] == 1
