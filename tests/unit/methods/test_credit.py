"""Turn-2 credit options (ScoreConfig.turn2_credit): exact expected gradients on a policy whose outcomes can be
enumerated, the per-attempt rollout layout, and the configuration's checks."""
import itertools

import numpy as np
import pytest

from methods.score import ScoreAlgorithm, ScoreConfig, turn_weights
from scorebench.engines.base import SamplingParams
from scorebench.protocol import run_protocol
from scorebench.tasks.arith import Arith

ALPHA = 10.0
SIG = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
THETA_A = 0.3                        # logit of a right first attempt
THETA_B = np.array([-0.4, 1.1])      # logit of a right second attempt, after a wrong / right first attempt


def _p1(y):
    p = SIG(THETA_A)
    return p if y else 1 - p


def _p2(y2, y1):
    p = SIG(THETA_B[y1])
    return p if y2 else 1 - p


def _dlog(y, theta):  # d/dtheta log sigma-Bernoulli(y; theta)
    return (1 - SIG(theta)) if y else -SIG(theta)


def _estimate(y1s, y2s, credit, m):
    """The policy-gradient estimate (d/dtheta_a, d/dtheta_b[0], d/dtheta_b[1]) of one batch (one problem),
    as the trainer forms it with "sequences" normalization: the mean over episodes of w·grad log pi."""
    r1, r2 = np.array([y1s], float), np.array([y2s], float)
    w, _ = turn_weights(r1, r2, "II", ALPHA, 0.0, 0.0, "rloo", credit, m)
    g = np.zeros(3)
    for j, (y1, y2) in enumerate(zip(y1s, y2s)):
        g[0] += w[0, j, 0] * _dlog(y1, THETA_A)
        g[1 + y1] += w[0, j, 1] * _dlog(y2, THETA_B[y1])
    return g / len(y1s)


def _moments(credit, k, m=1):
    """Exact mean and per-component variance of the estimate over every outcome of k first attempts with m second
    attempts each."""
    mean, sq = np.zeros(3), np.zeros(3)
    for firsts in itertools.product((0, 1), repeat=k):
        for seconds in itertools.product((0, 1), repeat=k * m):
            y1s = [y for y in firsts for _ in range(m)]
            p = np.prod([_p1(y) for y in firsts]) * np.prod([_p2(y2, y1) for y1, y2 in zip(y1s, seconds)])
            g = _estimate(y1s, list(seconds), credit, m)
            mean += p * g
            sq += p * g * g
    return mean, sq - mean * mean


def _true_gradient():
    """d/dtheta of E[r1] through turn 1, and (1 + alpha)·E_y1[d/dtheta_b E[r2 | y1]] through turn 2: what every
    option's turn-2 term estimates (the -alpha·r1 part of the shaped reward has no gradient through turn 2)."""
    ga = SIG(THETA_A) * (1 - SIG(THETA_A))
    gb = [(1 + ALPHA) * _p1(y1) * SIG(THETA_B[y1]) * (1 - SIG(THETA_B[y1])) for y1 in (0, 1)]
    return np.array([ga, *gb])


def test_unbiased_and_per_attempt_have_the_papers_expected_gradient():
    want = _true_gradient()
    paper, var_paper = _moments("paper", k=3)
    unbiased, var_unbiased = _moments("unbiased", k=3)
    per_attempt, var_pa = _moments("per_attempt", k=2, m=2)
    np.testing.assert_allclose(paper, want, rtol=1e-10)
    np.testing.assert_allclose(unbiased, want, rtol=1e-10)
    np.testing.assert_allclose(per_attempt, want, rtol=1e-10)
    # same mean, less noise on turn 2's parameters: the dropped term only added variance
    assert (var_unbiased[1:] < var_paper[1:]).all() and var_unbiased[0] == pytest.approx(var_paper[0])


def test_credit_weights_by_hand():
    r1 = np.array([[0.0, 1.0, 0.0]])
    r2 = np.array([[1.0, 1.0, 0.0]])
    w, kl = turn_weights(r1, r2, "II", 10.0, 0.01, 0.1, "rloo", "unbiased")
    np.testing.assert_allclose(w[0, :, 1], 11 * (r2[0] - np.array([0.5, 0.5, 1.0])))
    np.testing.assert_allclose(w[0, :, 0], r1[0] - np.array([0.5, 0.0, 0.5]))
    wp, _ = turn_weights(r1, r2, "II", 10.0, 0.01, 0.1, "rloo", "paper")
    shaped = r2[0] + 10 * (r2[0] - r1[0])  # [11, 1, 0]
    np.testing.assert_allclose(wp[0, :, 1], shaped - np.array([0.5, 5.5, 6.0]))
    # per_attempt, k = 2 first attempts x m = 2: siblings share r1; turn 2 is LOO among the siblings only
    r1 = np.array([[0.0, 0.0, 1.0, 1.0]])
    r2 = np.array([[1.0, 0.0, 1.0, 1.0]])
    w, kl = turn_weights(r1, r2, "II", 10.0, 0.01, 0.1, "rloo", "per_attempt", 2)
    np.testing.assert_allclose(w[0, :, 1], 11 * np.array([1.0, -1.0, 0.0, 0.0]))
    np.testing.assert_allclose(w[0, :, 0], [-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(kl, 0.01)
    # Stage I: turn 1 untrained (KL beta2 only), turn 2 LOO among siblings without the alpha gain
    w, kl = turn_weights(r1, r2, "I", 10.0, 0.01, 0.1, "rloo", "per_attempt", 2)
    np.testing.assert_allclose(w[0, :, 1], [1.0, -1.0, 0.0, 0.0])
    np.testing.assert_allclose(w[0, :, 0], 0.0)
    np.testing.assert_allclose(kl[0, :, 0], 0.1)


def test_per_attempt_config_checks():
    with pytest.raises(ValueError, match="samples_per_attempt"):
        ScoreConfig(turn2_credit="per_attempt")
    with pytest.raises(ValueError, match="samples_per_attempt"):
        ScoreConfig(samples_per_attempt=2)
    with pytest.raises(ValueError, match="turn2_credit"):
        ScoreConfig(turn2_credit="fancy")
    assert ScoreAlgorithm(ScoreConfig(turn2_credit="per_attempt", samples_per_attempt=3)).samples_per_attempt == 3


def test_per_attempt_rollouts_share_their_first_attempt(scripted):
    """k first attempts x m continuations: siblings share turn 1, each continues in its own conversation."""
    task = Arith(n_train=1, n_test=2)
    calls = []

    def answer(conv, k):
        calls.append(len(conv))
        return f"first {k}" if len(conv) == 1 else f"second {len(calls)}"
    eng = scripted(answer)
    eps = run_protocol(eng, task, task.test(), SamplingParams(n=2), samples_per_problem=2, progress=False,
                       samples_per_attempt=3)
    assert len(eps) == 2 * 2 * 3
    ex0 = task.test()[0]["id"]
    assert [e.id for e in eps[:6]] == [f"{ex0}#{i}" for i in range(6)]
    assert [e.turns[0].response for e in eps[:6]] == ["first 0"] * 3 + ["first 1"] * 3
    assert len({e.turns[1].response for e in eps}) == 12  # every continuation sampled on its own
    assert len(eng.calls[1]) == 12 and all(len(c) == 3 for c in eng.calls[1])
    with pytest.raises(ValueError, match="samples_per_attempt"):
        run_protocol(eng, task, task.test(), SamplingParams(), samples_per_attempt=0, progress=False)


@pytest.mark.parametrize("kw, msg", [
    ({"stage1_steps": -3}, "stage1_steps must be an integer >= 0"),
    ({"stage2_steps": 2.5}, "stage2_steps must be an integer"),
    ({"stage1_steps": 0, "stage2_steps": 0}, "has no optimizer step"),
    ({"problems_per_step": 0}, "problems_per_step must be an integer >= 1"),
    ({"samples_per_problem": 1}, "rloo"),
    ({"alpha": float("inf")}, "alpha must be"),
    ({"beta1": -0.1}, "beta1 must be"),
    ({"max_new_tokens": 0}, "max_new_tokens must be"),
    ({"multi_turn": 2}, "multi_turn must be true or false"),
])
def test_score_config_ranges(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ScoreConfig(**kw)
    assert ScoreConfig(alpha=0.0).alpha == 0.0  # the no-shaping ablation stays allowed
