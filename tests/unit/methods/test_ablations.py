"""The Table 4 ablations: each registered variant's fixed overrides, Score.method_config's precedence (overrides
over arguments over presets; REINFORCE's per-episode normalization always), and ScoreAlgorithm.weights for
multi_turn=False and stage2_algo="star" (STaR replaces Stage II only)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from scorebench.methods.score import ScoreAlgorithm, ScoreConfig, star_weights, turn_weights
from scorebench.registry import METHODS

R1 = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # (problems, samples): rewards of the first attempts
R2 = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
REWARDS = np.stack([R1, R2], axis=-1)

ABLATIONS = {"score": {}, "score-single-turn": {"multi_turn": False, "stages": "II"},
             "score-no-stage1": {"stages": "II"}, "score-no-shaping": {"alpha": 0.0},
             "score-star-stage2": {"stage2_algo": "star"}}  # Table 4's rows, in order


def _ctx(method, tmp_path, args=None, preset=None):
    p = tmp_path / "preset.json"
    p.write_text(json.dumps(preset or {}))
    cfg = SimpleNamespace(method=method, method_args={"preset": str(p), **(args or {})}, seed=0)
    return SimpleNamespace(config=cfg)


def test_table4_rows_are_the_registered_ablations():
    from scorebench.reproduce import TABLES
    assert [m for m, _ in TABLES[4].rows] == list(ABLATIONS)
    for name, overrides in ABLATIONS.items():
        assert METHODS.get(name).overrides == overrides, name


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_method_config_overrides_win_over_arguments_and_presets(name, tmp_path):
    preset = {"lr": 3e-4, "loss_normalization": "tokens",
              "score": {"stages": "I,II", "alpha": 5.0, "beta1": 0.02, "stage2_algo": "reinforce",
                        "multi_turn": True, "stage1_steps": 2, "stage2_steps": 3, "beta2": 0.2}}
    preset[name] = {**preset.get(name, {}), "beta2": 0.3}  # the variant's own section comes after "score"
    args = {"alpha": 7.0, "stages": "I,II", "stage2_algo": "reinforce", "multi_turn": True,
            "loss_normalization": "tokens", "problems_per_step": 3}
    mcfg, tcfg = METHODS.get(name)().method_config(_ctx(name, tmp_path, args, preset))
    want = {"stages": "I,II", "alpha": 7.0, "stage2_algo": "reinforce", "multi_turn": True,  # arguments ...
            "beta1": 0.02, "beta2": 0.3, "stage1_steps": 2, "stage2_steps": 3, "problems_per_step": 3}  # presets
    want.update(ABLATIONS[name])  # ... and the variant's fixed values over both
    assert {k: getattr(mcfg, k) for k in want} == want
    assert tcfg.lr == 3e-4
    # REINFORCE: sum of token log-probs per episode, mean over episodes, whatever the preset or arguments say
    assert tcfg.loss_normalization == "sequences"
    schedule = ScoreAlgorithm(mcfg).schedule
    assert schedule == (["II"] * 3 if "stages" in ABLATIONS[name] else ["I"] * 2 + ["II"] * 3)


def test_method_config_validates_after_overrides(tmp_path):
    """A variant's overrides are checked together with the arguments: w/o Stage I with zero Stage II steps has no
    step at all."""
    with pytest.raises(ValueError, match="no optimizer step"):
        METHODS.get("score-no-stage1")().method_config(_ctx("score-no-stage1", tmp_path, {"stage2_steps": 0}))
    mcfg, _ = METHODS.get("score")().method_config(_ctx("score", tmp_path, {"stage2_steps": 0}))
    assert mcfg.schedule() == ["I"] * mcfg.stage1_steps


def test_score_weights_follow_the_schedule():
    c = ScoreConfig(stages="I,II", stage1_steps=1, stage2_steps=1, samples_per_problem=3, alpha=10.0)
    algo = ScoreAlgorithm(c)
    assert algo.turns == 2 and algo.n_steps() == 2
    for step, stage in enumerate(["I", "II"]):
        w, kl, extra = algo.weights(step, REWARDS)
        ww, kk = turn_weights(R1, R2, stage, 10.0, c.beta1, c.beta2, "rloo")
        assert extra == {"stage": stage} and np.array_equal(w, ww) and np.array_equal(kl, kk)
    w, _, _ = algo.weights(1, REWARDS)
    # shaped turn 2 in Stage II: r2 + 10 (r2 − r1) = [[11, 1, −10], [1, 11, 0]], minus its leave-one-out mean
    np.testing.assert_allclose(w[..., 1], [[11 + 4.5, 1 - 0.5, -10 - 6], [1 - 5.5, 11 - 0.5, 0 - 6]])


def test_no_shaping_weights():
    algo = ScoreAlgorithm(ScoreConfig(stages="II", stage2_steps=1, samples_per_problem=3, alpha=0.0))
    w, kl, _ = algo.weights(0, REWARDS)
    np.testing.assert_allclose(w[..., 1], R2 - (R2.sum(1, keepdims=True) - R2) / 2)  # plain r2 − LOO(r2)
    np.testing.assert_allclose(w[..., 0], R1 - (R1.sum(1, keepdims=True) - R1) / 2)
    assert (kl == 0.01).all()


def test_single_turn_ablation_trains_turn_one_only():
    c = ScoreConfig(stages="II", stage2_steps=2, samples_per_problem=3, multi_turn=False, beta1=0.02, beta2=0.5)
    algo = ScoreAlgorithm(c)
    assert algo.turns == 1  # the RL loop rolls out one turn
    one_turn = REWARDS[..., :1]
    w, kl, extra = algo.weights(0, one_turn)
    assert w.shape == kl.shape == (2, 3, 1) and extra == {"stage": "II"}
    np.testing.assert_allclose(w[..., 0], R1 - (R1.sum(1, keepdims=True) - R1) / 2)
    assert (kl == 0.02).all()
    w2, _, _ = algo.weights(0, REWARDS)  # a second turn, if present, is ignored
    assert np.array_equal(w2, w)


def test_star_replaces_stage2_only():
    c = ScoreConfig(stages="I,II,I", stage1_steps=1, stage2_steps=1, samples_per_problem=3, stage2_algo="star")
    algo = ScoreAlgorithm(c)
    assert algo.schedule == ["I", "II", "I"]
    for step in (0, 2):  # Stage I is SCoRe's: no gradient on turn 1, beta2 on turn 1, REINFORCE on turn 2
        w, kl, extra = algo.weights(step, REWARDS)
        ww, kk = turn_weights(R1, R2, "I", c.alpha, c.beta1, c.beta2, "rloo")
        assert extra == {"stage": "I"} and np.array_equal(w, ww) and np.array_equal(kl, kk)
        assert (kl[..., 0] == c.beta2).all() and (w[..., 0] == 0).all()
    w, kl, extra = algo.weights(1, REWARDS)
    sw, sk = star_weights(R1, R2)
    assert extra == {"stage": "II"} and np.array_equal(w, sw) and np.array_equal(kl, sk)
    # filtered SFT: weight 1 on each correct attempt of a trace that ends correct, nothing else, no KL
    assert w[..., 0].tolist() == [[0, 1, 0], [1, 0, 0]] and w[..., 1].tolist() == [[1, 1, 0], [1, 1, 0]]
    assert (kl == 0).all()
