"""Metrics against hand-computed episodes."""
import math

import pytest

from scorebench import metrics as M
from scorebench.protocol import Episode, Turn


def ep(i, *rewards, responses=None, meta=None):
    responses = responses or [f"answer {r}" for r in rewards]
    return Episode(id=str(i), turns=[Turn(prompt="p", response=s, reward=r) for r, s in zip(rewards, responses)],
                   meta=meta or {})


def test_two_turn_hand_case():
    # 10 problems: 3 c→c, 1 c→i, 2 i→c, 4 i→i.
    eps = ([ep(i, 1, 1) for i in range(3)] + [ep(3, 1, 0)] + [ep(i, 0, 1) for i in (4, 5)]
           + [ep(i, 0, 0) for i in range(6, 10)])
    m = M.compute(eps, n_bootstrap=200)
    assert m["n"] == 10
    assert m["acc_t1"] == pytest.approx(0.4)
    assert m["acc_t2"] == pytest.approx(0.5)
    assert m["delta"] == pytest.approx(0.1)
    assert m["delta_i2c"] == pytest.approx(0.2)
    assert m["delta_c2i"] == pytest.approx(0.1)
    assert m["delta"] == pytest.approx(m["delta_i2c"] - m["delta_c2i"])
    lo, hi = m["ci95"]["acc_t1"]
    assert lo <= 0.4 <= hi and lo < hi


def test_three_turns_consecutive_pairs():
    eps = [ep(0, 0, 1, 0), ep(1, 1, 1, 1), ep(2, 0, 0, 1), ep(3, 1, 0, 0)]
    m = M.compute(eps, n_bootstrap=10)
    assert [m["acc_t1"], m["acc_t2"], m["acc_t3"]] == [0.5, 0.5, 0.5]
    assert m["delta_i2c"] == 0.25 and m["delta_c2i"] == 0.25
    # t2→t3: ep0 c→i, ep2 i→c
    assert m["delta_i2c_t2t3"] == 0.25 and m["delta_c2i_t2t3"] == 0.25 and m["delta_t2t3"] == 0


def test_paired_bootstrap_degenerate_delta():
    # Every problem is identical at both turns: Δ is exactly 0 in every resample.
    eps = [ep(i, i % 2, i % 2) for i in range(20)]
    m = M.compute(eps, n_bootstrap=300)
    assert m["ci95"]["delta"] == [0.0, 0.0]
    assert m["ci95"]["acc_t1"][0] < 0.5 < m["ci95"]["acc_t1"][1]


def test_bootstrap_ci_width_matches_binomial():
    eps = [ep(i, 1 if i < 50 else 0, 0) for i in range(100)]
    m = M.compute(eps, n_bootstrap=2000)
    lo, hi = m["ci95"]["acc_t1"]
    se = math.sqrt(0.25 / 100)
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.08)  # a 90% (1.645) or 98% (2.326) interval is out


def test_bootstrap_ci_endpoints_are_the_paired_95_percent_interval():
    """Every CI endpoint equals an independent paired bootstrap: B resamples of the problems (one
    ``integers(0, n, n)`` draw of the seed's generator each, shared by all statistics), the 2.5th and 97.5th
    percentiles (numpy's linear interpolation) of each statistic over them."""
    import numpy as np
    rows = [(1, 1)] * 7 + [(1, 0)] * 3 + [(0, 1)] * 6 + [(0, 0)] * 9  # n = 25, Δ = 0.12
    eps = [ep(i, *r) for i, r in enumerate(rows)]
    c = np.array(rows, dtype=bool)
    for seed, B in ((0, 400), (3, 250)):
        m = M.compute(eps, n_bootstrap=B, seed=seed)
        rng = np.random.default_rng(seed)
        res = [c[rng.integers(0, len(c), len(c))] for _ in range(B)]
        stats = {"acc_t1": [r[:, 0].mean() for r in res], "acc_t2": [r[:, 1].mean() for r in res],
                 "delta": [r[:, 1].mean() - r[:, 0].mean() for r in res],
                 "delta_i2c": [(~r[:, 0] & r[:, 1]).mean() for r in res],
                 "delta_c2i": [(r[:, 0] & ~r[:, 1]).mean() for r in res]}
        for key, v in stats.items():
            want = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
            assert m["ci95"][key] == pytest.approx(want, abs=1e-12), (seed, key)


def test_breakdown_by_meta():
    eps = [ep(0, 1, 1, meta={"level": 1}), ep(1, 0, 1, meta={"level": 1}), ep(2, 0, 0, meta={"level": 2})]
    m = M.compute(eps, n_bootstrap=10)
    assert m["breakdown"]["level"]["1"]["acc_t1"] == 0.5
    assert m["breakdown"]["level"]["1"]["delta_i2c"] == 0.5
    assert m["breakdown"]["level"]["2"]["n"] == 1


def test_edit_distance_ratio():
    assert M.edit_distance_ratio("abc", "abc") == 0.0
    assert M.edit_distance_ratio("abc", "xyz") == 1.0
    assert M.edit_distance_ratio("abcd", "abxy") == pytest.approx(0.5)
    eps = [ep(0, 1, 1, responses=["same", "same"]), ep(1, 0, 1, responses=["abcd", "abxy"])]
    m = M.compute(eps, n_bootstrap=10)
    assert m["edit_ratio_mean"] == pytest.approx(0.25)
    assert m["identical_t1_t2"] == 0.5


def test_ungraded_turns_are_not_attempts():
    e = Episode(id="0", turns=[Turn("p", "a", 0.0), Turn("feedback?", "fb", None, graded=False), Turn("r", "b", 1.0)])
    m = M.compute([e], n_bootstrap=5)
    assert m["turns"] == 2 and m["delta_i2c"] == 1.0


def test_mixed_turn_counts_rejected():
    with pytest.raises(ValueError):
        M.correctness([ep(0, 1, 1), ep(1, 1)])


def test_truncation_and_length_per_turn():
    """Answers cut by the token cap are counted per turn, with mean generated tokens."""
    eps = [Episode(id=str(i), turns=[Turn(prompt="p", response="a", reward=0, finish_reason=f1, n_tokens=n1),
                                     Turn(prompt="p", response="b", reward=1, finish_reason="stop", n_tokens=n2)])
           for i, (f1, n1, n2) in enumerate([("length", 64, 10), ("stop", 20, 30), ("length", 64, 20),
                                               ("stop", 12, 40)])]
    m = M.compute(eps, n_bootstrap=10)
    assert m["truncated_t1"] == pytest.approx(0.5) and m["truncated_t2"] == 0.0
    assert m["tokens_t1"] == pytest.approx(40.0) and m["tokens_t2"] == pytest.approx(25.0)
    from scorebench.tables import table
    row = table([("m", "t", m)], ci=False, diagnostics=True).splitlines()[2]
    assert row.endswith("| 50.0 | 0.0 | 40.0 | 25.0 | 0.0 |"), row


def test_uncut_delta_by_hand():
    from scorebench.metrics import compute

    def ep(r1, r2, cut1=False):
        return Episode("x", [Turn("q", "a", reward=r1, finish_reason="length" if cut1 else "stop"),
                             Turn("p", "b", reward=r2)])
    eps = [ep(0, 1, cut1=True), ep(0, 1, cut1=True), ep(0, 1), ep(1, 1), ep(1, 0), ep(0, 0)]
    m = compute(eps, n_bootstrap=50)
    assert m["delta"] == pytest.approx(2 / 6)          # three i->c, one c->i over six
    assert m["n_uncut"] == 4 and m["delta_uncut"] == pytest.approx(0.0)  # one i->c, one c->i over four
    lo, hi = m["ci95"]["delta_uncut"]
    assert lo <= 0.0 <= hi


def test_one_turn_metrics_and_table():
    """--turns 1: Acc@t1 only (no Δ, no uncut pairs, no edit distance), and the table shows only that column."""
    from scorebench import tables
    eps = [ep(0, 1), ep(1, 0), ep(2, 0), ep(3, 1)]
    m = M.compute(eps, n_bootstrap=20)
    assert (m["n"], m["turns"], m["acc_t1"]) == (4, 1, 0.5)
    assert not any(k.startswith("delta") or k.startswith("acc_t2") or k.startswith("edit") for k in m)
    t = tables.table([("base", "arith", m)], ci=False).splitlines()
    assert t[0] == "| method | task | n | Acc@t1 |" and t[2] == "| base | arith | 4 | 50.0 |"
