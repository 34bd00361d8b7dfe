"""The mean over training seeds and its two-level bootstrap CI (metrics.seed_mean) against hand-computed cases."""
import numpy as np
import pytest

from scorebench import metrics as M
from scorebench.protocol import Episode, Turn


def run(pairs):
    """A seed's test episodes from (r1, r2) pairs, one per problem."""
    return [Episode(id=str(i), turns=[Turn("p", "a", float(r1)), Turn("fix", "b", float(r2))])
            for i, (r1, r2) in enumerate(pairs)]


def test_means_are_the_seeds_average_and_each_seed_is_kept():
    # seed A: 2 c→c, 1 i→c, 1 i→i (Acc 50 → 75); seed B: 1 c→c, 1 c→i, 2 i→i (50 → 25)
    a = run([(1, 1), (1, 1), (0, 1), (0, 0)])
    b = run([(1, 1), (1, 0), (0, 0), (0, 0)])
    m = M.seed_mean([a, b], n_bootstrap=400)
    assert m["n_seeds"] == 2 and m["n"] == 4 and m["turns"] == 2
    assert m["acc_t1"] == pytest.approx(0.5) and m["acc_t2"] == pytest.approx(0.5)
    assert m["delta"] == pytest.approx(0.0)
    assert m["delta_i2c"] == pytest.approx(0.125) and m["delta_c2i"] == pytest.approx(0.125)
    assert m["per_seed"][0]["delta"] == pytest.approx(0.25) and m["per_seed"][1]["delta"] == pytest.approx(-0.25)


def test_seed_level_alone_gives_the_multiset_percentiles():
    """Every problem of a seed alike, so resampling problems changes nothing and only the seed level moves the
    mean. Seeds with Δ 1, 0, 0: a draw's mean is 0 with probability (2/3)^3 = 0.30 and 1 with (1/3)^3 = 0.037,
    so the 2.5th and 97.5th percentiles are exactly 0 and 1. A CI over problems alone would be one point."""
    up, flat = run([(0, 1)] * 6), run([(1, 1)] * 6)
    m = M.seed_mean([up, flat, flat], n_bootstrap=4000)
    assert m["delta"] == pytest.approx(1 / 3)
    assert m["ci95"]["delta"] == [0.0, 1.0]
    assert m["ci95"]["acc_t2"] == [1.0, 1.0]  # every seed's second attempt is right on every problem
    two = M.seed_mean([up, flat], n_bootstrap=4000)  # {A,A}: 1, {A,B}: 0.5, {B,B}: 0 with 1/4, 1/2, 1/4
    assert two["ci95"]["delta"] == [0.0, 1.0]


def test_problem_level_matches_the_single_seed_bootstrap():
    """One seed: the draws are compute()'s paired bootstrap over problems, so the CIs agree up to Monte Carlo
    error; the paired resampling keeps Δ's CI narrower than Acc@t2's when the attempts agree."""
    rng = np.random.default_rng(3)
    r1 = rng.random(300) < 0.4
    r2 = np.where(rng.random(300) < 0.9, r1, ~r1)  # the second attempt mostly repeats the first
    eps = run(zip(r1, r2))
    m, one = M.seed_mean([eps], n_bootstrap=4000), M.compute(eps, n_bootstrap=4000)
    for k in ("acc_t1", "acc_t2", "delta"):
        assert m[k] == pytest.approx(one[k])
        assert m["ci95"][k] == pytest.approx(one["ci95"][k], abs=0.012), k
    width = lambda k: m["ci95"][k][1] - m["ci95"][k][0]  # noqa: E731
    assert width("delta") < width("acc_t2")


def test_seeds_on_different_problem_sets_are_refused():
    with pytest.raises(ValueError, match="different problem sets"):
        M.seed_mean([run([(1, 1)] * 4), run([(1, 1)] * 5)])
    with pytest.raises(ValueError, match="at least one seed"):
        M.seed_mean([])
