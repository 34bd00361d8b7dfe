"""SCoRe's objective against hand-computed REINFORCE per turn, on a tiny model with hand-set rewards."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scorebench.methods.score import ScoreConfig, baseline_values, star_weights, turn_weights
from scorebench.protocol import Episode, Turn

R1 = np.array([[0.0, 1.0], [1.0, 1.0]])  # (problems, samples)
R2 = np.array([[1.0, 1.0], [0.0, 1.0]])


def test_rloo_is_leave_one_out():
    # two problems: the leave-one-out mean is over the problem's own other samples, never the batch's
    r = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(baseline_values(r, "rloo"), [[1 / 3, 2 / 3, 2 / 3, 1 / 3], [2 / 3, 2 / 3, 2 / 3, 1.0]])
    assert baseline_values(r, "mean").tolist() == [[0.625] * 4] * 2  # "mean": the batch mean
    assert baseline_values(r, "none").tolist() == [[0.0] * 4] * 2
    r3 = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])  # k = 2: each sample's baseline is its partner's reward
    assert baseline_values(r3, "rloo").tolist() == [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]


def test_stage1_weights_by_hand():
    w, k = turn_weights(R1, R2, "I", alpha=10, beta1=0.01, beta2=0.1, baseline="rloo")
    assert w[..., 0].tolist() == [[0, 0], [0, 0]]            # no policy gradient on turn 1
    assert w[..., 1].tolist() == [[0, 0], [-1, 1]]           # r2 − LOO mean of r2
    assert (k[..., 0] == 0.1).all() and (k[..., 1] == 0.01).all()  # beta2 on turn 1, beta1 on turn 2


def test_stage2_weights_by_hand():
    w, k = turn_weights(R1, R2, "II", alpha=10, beta1=0.01, beta2=0.1, baseline="rloo")
    # turn 1: r1 − LOO(r1); turn 2: shaped = r2 + 10 (r2 − r1) = [[11, 1], [−10, 1]], minus LOO(shaped)
    assert w[..., 0].tolist() == [[-1, 1], [0, 0]]
    assert w[..., 1].tolist() == [[10, -10], [-11, 11]]
    assert (k == 0.01).all()
    w0, _ = turn_weights(R1, R2, "II", alpha=0, beta1=0.01, beta2=0.1, baseline="rloo")
    assert w0[..., 1].tolist() == [[0, 0], [-1, 1]]          # alpha = 0: the bonus is gone


def test_single_turn_and_star_weights():
    w, k = turn_weights(R1, None, "II", alpha=10, beta1=0.01, beta2=0.1, baseline="none")
    assert w.shape == k.shape == (2, 2, 1) and w[..., 0].tolist() == R1.tolist()
    assert (k == 0.01).all()  # single-turn RL: beta1 on its one turn (not Stage I's beta2, not 0)
    w, k = turn_weights(R1, None, "II", alpha=10, beta1=0.03, beta2=0.1, baseline="rloo")
    assert w[..., 0].tolist() == [[-1, 1], [0, 0]] and (k == 0.03).all()  # r1 − LOO(r1), per problem
    w, k = star_weights(R1, R2)
    assert w[..., 0].tolist() == [[0, 1], [0, 1]] and w[..., 1].tolist() == [[1, 1], [0, 1]] and (k == 0).all()


def test_config_validation():
    with pytest.raises(ValueError):
        ScoreConfig(baseline="rloo", samples_per_problem=1)
    with pytest.raises(ValueError):
        ScoreConfig(stages="I,III")
    assert ScoreConfig(stages="I,II,I", stage1_steps=2, stage2_steps=1).schedule() == ["I", "I", "II", "I", "I"]


@pytest.fixture(scope="module")
def tiny(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg)


def _episodes(tokenizer):
    rng = np.random.default_rng(0)
    eps = []
    from scorebench.engines.base import render_ids
    glue = tokenizer("\n<|im_start|>user\nfix it<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for p in range(2):
        for s in range(2):
            t1 = Turn(f"problem {p}", "a", response_ids=[int(x) for x in rng.integers(100, 200, 3 + s)] + [2],
                      prompt_ids=render_ids(tokenizer, [{"role": "user", "content": f"problem {p}"}]))
            # as an engine that continues from the sampled ids would prompt turn 2
            t2 = Turn("fix it", "b", response_ids=[int(x) for x in rng.integers(100, 200, 2 + p)] + [2],
                      prompt_ids=t1.prompt_ids + t1.response_ids + glue)
            eps.append(Episode(id=f"{p}#{s}", turns=[t1, t2]))
    return eps


def _positions(ids, sub, start=0):
    for i in range(start, len(ids) - len(sub) + 1):
        if ids[i:i + len(sub)] == sub:
            return list(range(i, i + len(sub)))
    raise AssertionError("response tokens not found")


@pytest.mark.parametrize("stage,temp", [("I", 1.0), ("II", 1.0), ("II", 0.7)])
def test_loss_and_gradient_equal_hand_reinforce(tiny, tokenizer, stage, temp, tmp_path):
    """REINFORCE + per-token KL by hand, at the sampling temperature: log pi_T = log_softmax(logits / T)."""
    from scorebench.training import Trainer, TrainConfig, episode_to_sequence
    tcfg = TrainConfig(lr=1e-3, batch_size=4, micro_batch_size=4, kl_estimator="full",
                       loss_normalization="sequences")
    sc = ScoreConfig()  # alpha 10, beta1 0.01, beta2 0.1
    trainer = Trainer(copy.deepcopy(tiny), tokenizer, tcfg, out_dir=tmp_path, temperature=temp)
    with torch.no_grad():  # move the policy away from the reference so KL is not zero
        for prm in trainer.model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    eps = _episodes(tokenizer)
    w, k = turn_weights(R1, R2, stage, sc.alpha, sc.beta1, sc.beta2, "rloo")
    w, k = w.reshape(4, 2), k.reshape(4, 2)
    seqs = [episode_to_sequence(tokenizer, e, list(wi), list(ki)) for e, wi, ki in zip(eps, w, k)]

    trainer.model.zero_grad()
    loss, stats = trainer.loss(seqs)
    loss.backward()
    got = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}

    # By hand: per episode, unpadded, positions located by searching for each turn's sampled tokens.
    trainer.model.zero_grad()
    manual = 0.0
    for e, seq, wi, ki in zip(eps, seqs, w, k):
        ids = seq.input_ids
        x = torch.tensor([ids])
        logp = F.log_softmax(trainer.model(x).logits[0].float() / temp, -1)
        with torch.no_grad():
            logq = F.log_softmax(trainer.ref_model(x).logits[0].float() / temp, -1)
        p1 = _positions(ids, e.turns[0].response_ids)
        p2 = _positions(ids, e.turns[1].response_ids, p1[-1] + 1)
        for turn, pos in enumerate((p1, p2)):
            assert all(seq.weights[t] == wi[turn] and seq.kl_weights[t] == ki[turn] for t in pos)
            lp = torch.stack([logp[t - 1, ids[t]] for t in pos])  # position t is predicted from t − 1
            kl = torch.stack([(logp[t - 1].exp() * (logp[t - 1] - logq[t - 1])).sum() for t in pos])
            manual = manual - float(wi[turn]) * lp.sum() + float(ki[turn]) * kl.sum()
        others = set(range(len(ids))) - set(p1) - set(p2)
        assert all(seq.weights[t] == 0 and seq.kl_weights[t] == 0 for t in others)
    manual = manual / len(eps)
    manual.backward()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-4, abs=1e-6)
    for n, p in trainer.model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-3, atol=1e-5 * p.grad.abs().max().item())  # fp32: scale
