"""The trainer's arithmetic on a tiny random Llama: masked loss, gradient mask, KL estimators, exact resume."""
from __future__ import annotations

import json
import math

import pytest
import torch

from scorebench.protocol import Episode, Turn
from scorebench.engines.base import render_ids
from scorebench.training import Sequence, TrainConfig, Trainer, episode_to_sequence, episode_to_sequences, load_preset
from scorebench.training.sequences import end_of_turn


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer
    from scorebench.models import resolve
    t = AutoTokenizer.from_pretrained(resolve(None))
    if t.pad_token is None:
        t.pad_token = t.eos_token
    return t


def tiny(tok, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def seqs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        L = 5 + i % 4
        ids = torch.randint(0, 1000, (L,), generator=g).tolist()
        w = [0.0] * 2 + [1.0] * (L - 2)
        w[-1] = 0.5 * (i % 2)  # a zero weight inside the response exercises the position mask
        out.append(Sequence(ids, w, [0.0] * L))
    return out


def assert_grad_close(got, want, msg=None):
    """Two fp32 gradients that should be equal up to summation order. fp32 rounding is relative to a tensor's scale,
    not to each entry: an entry that is a near-cancelling sum missed a per-entry tolerance on one CI machine and not
    another. Measured: up to 5e-6 of the largest entry (micro-batches of 1, two threads). A wrong gradient is off by
    a sizeable part of its scale (one micro-batch of six left out: a sixth), so the absolute tolerance is 1e-4 of the
    tensor's largest entry."""
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item(), msg=msg)


def cfg(**kw):
    base = dict(lr=1e-2, batch_size=4, micro_batch_size=2, steps=4, epochs=100, seed=0)
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------- config
def test_from_dict_rejects_unknown_key():
    with pytest.raises(ValueError, match="lerning_rate"):
        TrainConfig.from_dict({"lr": 1e-5, "lerning_rate": 3})
    assert TrainConfig.from_dict({"lr": 1e-5, "betas": [0.9, 0.95]}).betas == (0.9, 0.95)
    for bad in ("k4", "k1", "k3"):  # k1/k3 as a loss do not give the gradient of KL(pi || ref)
        with pytest.raises(ValueError, match="kl_estimator"):
            TrainConfig(kl_estimator=bad)


def test_paper_defaults_and_presets():
    c = TrainConfig()
    assert (c.lr, c.temperature, c.steps, c.batch_size) == (5e-6, 1.0, 3000, 512)
    from scorebench.methods.score import ScoreConfig
    sc = ScoreConfig()
    assert (sc.alpha, sc.beta1, sc.beta2) == (10.0, 0.01, 0.1)  # the paper's, on SCoRe's own config
    for name in ("cpu-small", "paper"):
        p = load_preset(name)
        TrainConfig.from_dict({k: v for k, v in p.items() if not k.startswith("_") and not isinstance(v, dict)})
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("nope")


# ---------------------------------------------------------------- sequences
def test_sequence_matches_chat_template_and_weights_on_responses(tok):
    ep = Episode("e", [Turn("What is 2+3? Answer.", "It is 5."), Turn("Fix it, if needed.", "Still 5, final.")])
    s = episode_to_sequence(tok, ep, [0.25, 1.0], kl_weights=[0.1, 0.0])
    # the conversation written out by hand (the template's default system turn, then ChatML), ending with the
    # second attempt's end-of-turn token (the template's trailing newline is not trained on)
    assert tok.decode(s.input_ids) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+3? Answer.<|im_end|>\n<|im_start|>assistant\nIt is 5.<|im_end|>\n"
        "<|im_start|>user\nFix it, if needed.<|im_end|>\n<|im_start|>assistant\nStill 5, final.<|im_end|>")
    eot = end_of_turn(tok)
    r1 = tok("It is 5.", add_special_tokens=False)["input_ids"] + [eot]
    r2 = tok("Still 5, final.", add_special_tokens=False)["input_ids"] + [eot]
    pos2 = [i for i, w in enumerate(s.weights) if w == 1.0]
    pos1 = [i for i, w in enumerate(s.weights) if w == 0.25]
    assert [s.input_ids[i] for i in pos2] == r2 and pos2 == list(range(len(s.input_ids) - len(r2), len(s.input_ids)))
    assert [s.input_ids[i] for i in pos1] == r1 and pos1 == list(range(pos1[0], pos1[0] + len(r1)))
    assert [i for i, k in enumerate(s.kl_weights) if k] == pos1
    assert sum(1 for w in s.weights if w) == len(r1) + len(r2)
    # eot == pad: the im_end tokens of the prompts must carry no weight although they share the id
    assert any(t == eot and w == 0 for t, w in zip(s.input_ids, s.weights))


def test_sequence_uses_sampled_ids_and_skips_ungraded(tok):
    eot = end_of_turn(tok)
    sampled = tok(" 5", add_special_tokens=False)["input_ids"] + [eot]
    ep = Episode("e", [Turn("Q?", "a", response_ids=[100, 200, eot]), Turn("Feedback?", "fb", graded=False),
                       Turn("Refine.", "5", response_ids=sampled)])
    # turn 1's ids (100, 200) are not its text "a": turn 3's test-time context does not extend them, so turn 3
    # is its own sequence: the rendered conversation, then the sampled ids; turn 1 carries no loss and is dropped
    with pytest.raises(ValueError, match="contexts"):
        episode_to_sequence(tok, ep, [0.0, 1.0])
    (s,) = episode_to_sequences(tok, ep, [0.0, 1.0])
    trained = [t for t, w in zip(s.input_ids, s.weights) if w]
    assert trained == sampled and s.input_ids[-len(sampled):] == sampled
    assert s.input_ids[:-len(sampled)] == render_ids(tok, ep.messages(2) + [{"role": "user", "content": "Refine."}])
    with pytest.raises(ValueError):
        episode_to_sequences(tok, ep, [1.0, 1.0, 1.0])


# ---------------------------------------------------------------- loss
def hand_loss(model, batch):
    num, den = 0.0, 0
    for s in batch:
        ids = torch.tensor([s.input_ids])
        logits = model(input_ids=ids).logits[0].double()
        logp = logits - logits.exp().sum(-1, keepdim=True).log()  # log-softmax by hand
        for t in range(1, len(s.input_ids)):
            if s.weights[t]:
                num -= s.weights[t] * logp[t - 1, s.input_ids[t]].item()
                den += 1
    return num / den


def test_masked_loss_equals_hand_cross_entropy(tok, tmp_path):
    model = tiny(tok)
    tr = Trainer(model, tok, cfg(), tmp_path, ref_model=False)
    batch = seqs()
    loss, stats = tr.loss(batch)
    with torch.no_grad():
        expected = hand_loss(tr.model, batch)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    assert stats["tokens"] == sum(1 for s in batch for w in s.weights[1:] if w)
    tr2 = Trainer(tiny(tok), tok, cfg(loss_normalization="sequences"), tmp_path / "b", ref_model=False)
    loss2, _ = tr2.loss(batch)
    assert math.isclose(loss2.item(), expected * stats["tokens"] / len(batch), rel_tol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_only_weighted_positions_get_gradient(tok, tmp_path, monkeypatch, fused):
    """The gradient reaches the hidden state of a position iff the token it predicts carries a weight (fused
    output-layer loss and autograd's)."""
    import scorebench.training.trainer as trainer_mod
    tr = Trainer(tiny(tok), tok, cfg(), tmp_path, ref_model=False)
    tr.fused = fused
    batch = seqs(3)
    captured = {}
    head = tr.model.get_output_embeddings()
    orig_forward, orig_fused = head.forward, trainer_mod.fused_token_loss

    def grab(h, *a, **kw):
        h.retain_grad()
        captured["h"] = h
        return (orig_fused if fused else orig_forward)(h, *a, **kw)
    if fused:
        monkeypatch.setattr(trainer_mod, "fused_token_loss", grab)
    else:
        head.forward = grab
    loss, _ = tr.loss(batch)
    loss.backward()
    head.forward = orig_forward
    ids, mask, w, k = tr._collate(batch)
    rows, cols = ((w != 0) | (k != 0)).nonzero(as_tuple=True)
    g = captured["h"].grad.abs().sum(-1)  # one row per selected position
    assert len(g) == sum(1 for s in batch for x in s.weights[1:] if x)
    for j, (r, t) in enumerate(zip(rows.tolist(), cols.tolist())):
        assert batch[r].weights[t + 1] != 0 and g[j] > 0, (r, t)


def test_selected_logits_equal_full_forward(tok, tmp_path):
    """Projecting only the loss positions changes nothing: the loss equals the one from full logits."""
    tr = Trainer(tiny(tok), tok, cfg(), tmp_path, ref_model=False)
    batch = seqs(4)
    loss, _ = tr.loss(batch)
    ids, mask, w, _ = tr._collate(batch)
    with torch.no_grad():
        logits = tr.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert math.isclose(loss.item(), float(-(w * logp).sum() / (w != 0).sum()), rel_tol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("est", ["k2", "full"])
def test_kl_zero_when_policy_equals_reference(tok, tmp_path, est, dtype):
    """KL is 0 before any step; under bf16 the frozen reference keeps its linear weights in bf16 (what autocast
    casts the policy's to), so its forward is the policy's bit for bit."""
    tr = Trainer(tiny(tok), tok, cfg(kl_estimator=est, dtype=dtype), tmp_path)  # ref = frozen copy
    linears = [m for m in tr.ref_model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == getattr(torch, dtype) for m in linears)
    assert tr.ref_model.get_output_embeddings().weight.dtype == torch.float32
    batch = [Sequence(s.input_ids, [0.0] * len(s.input_ids), [1.0] * len(s.input_ids)) for s in seqs(3)]
    loss, stats = tr.loss(batch)
    assert abs(stats["kl"]) < 1e-7 and abs(loss.item()) < 1e-7 and stats["kl_count"] > 0


def test_kl_estimators_match_formulas(tok, tmp_path):
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    ref = torch.tensor([[[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]]])
    tgt = torch.tensor([[0, 2]])
    sel = torch.ones_like(tgt, dtype=torch.bool)
    p, q = torch.softmax(logits, -1)[0], torch.softmax(ref, -1)[0]
    lp = torch.log(p[[0, 1], [0, 2]])
    lq = torch.log(q[[0, 1], [0, 2]])
    want = {"k2": 0.5 * (lp - lq) ** 2, "full": (p * (p.log() - q.log())).sum(-1)}
    tr = Trainer(tiny(tok), tok, cfg(), tmp_path, ref_model=False)
    for est, w in want.items():
        tr.cfg.kl_estimator = est
        assert torch.allclose(tr.kl_terms(logits[sel], ref[sel], tgt[sel]), w, atol=1e-6), est


@pytest.mark.parametrize("est", ["k2", "full"])
def test_kl_estimator_gradient_is_the_kl_gradient(est):
    """On a 3-token softmax pi = softmax(theta): the expected gradient of the KL loss over on-policy samples
    (exact expectation: sum over tokens weighted by pi, gradient through the loss only) equals d KL(pi||ref)/d theta.
    k1 = log pi - log ref would give 0 here and k3 the gradient of KL(ref || pi)."""
    from types import SimpleNamespace
    theta = torch.tensor([0.3, -0.5, 1.1], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([0.0, 0.4, -0.2], dtype=torch.float64)
    host = SimpleNamespace(cfg=SimpleNamespace(kl_estimator=est))
    kl_terms = Trainer.kl_terms.__get__(host)
    pi = torch.softmax(theta, -1).detach()
    loss = sum(pi[t] * kl_terms(theta[None], ref[None], torch.tensor([t]))[0] for t in range(3))
    (g,) = torch.autograd.grad(loss, theta)
    th = theta.detach().clone().requires_grad_(True)
    p = torch.softmax(th, -1)
    exact = (p * (torch.log(p) - torch.log_softmax(ref, -1))).sum()
    (want,) = torch.autograd.grad(exact, th)
    assert torch.allclose(g, want, atol=1e-10), (est, g, want)


def test_kl_term_enters_loss_after_update(tok, tmp_path):
    """After a step the loss is pg + KL to the *initial* weights, by hand against a copy the test keeps; the
    reference is still those weights and the policy is not."""
    import copy
    model = tiny(tok)
    init = copy.deepcopy(model).eval()  # the reference as the test knows it, outside the trainer
    tr = Trainer(model, tok, cfg(lr=5e-2, kl_estimator="full"), tmp_path)
    batch = [Sequence(s.input_ids, s.weights, [0.5] * len(s.input_ids)) for s in seqs(4)]
    tr.step(batch)
    loss, st = tr.loss(batch)
    ref_sd, init_sd = tr.ref_model.state_dict(), init.state_dict()
    assert all(torch.equal(ref_sd[n], init_sd[n]) for n in init_sd)  # the step did not touch the reference
    assert any(not torch.equal(p, init_sd[n]) for n, p in tr.model.state_dict().items())  # ... but the policy
    pg = kl_sum = 0.0
    den = 0
    with torch.no_grad():
        for s in batch:
            ids = torch.tensor([s.input_ids])
            logp = torch.log_softmax(tr.model(input_ids=ids).logits[0].double(), -1)
            logq = torch.log_softmax(init(input_ids=ids).logits[0].double(), -1)
            for t in range(1, len(s.input_ids)):
                if s.weights[t] or s.kl_weights[t]:
                    den += 1
                    pg -= s.weights[t] * logp[t - 1, s.input_ids[t]].item()
                    kl_sum += s.kl_weights[t] * float((logp[t - 1].exp() * (logp[t - 1] - logq[t - 1])).sum())
    assert kl_sum > 1e-4  # the policy moved away from the reference
    assert st["kl_term"] == pytest.approx(kl_sum / den, rel=1e-3)
    assert st["pg"] == pytest.approx(pg / den, rel=1e-4)
    assert loss.item() == pytest.approx((pg + kl_sum) / den, rel=1e-4)
    assert loss.item() == pytest.approx(st["pg"] + st["kl_term"], rel=1e-6)


@pytest.mark.parametrize("est", ["k2", "full"])
def test_fused_output_layer_loss_equals_autograd_path(tok, tmp_path, est):
    """The fused, chunked output-layer loss (the default) gives the loss, stats and every parameter's gradient
    of the unfused path autograd differentiates, after a step has moved the policy off its reference."""
    tr = Trainer(tiny(tok), tok, cfg(lr=5e-2, kl_estimator=est), tmp_path, temperature=0.7)
    batch = [Sequence(s.input_ids, s.weights, [0.5 * (t % 3 != 0) for t in range(len(s.input_ids))])
             for s in seqs(4)]
    tr.step(batch)
    out = {}
    for fused in (True, False):
        tr.fused = fused
        tr.optimizer.zero_grad(set_to_none=True)
        loss, st = tr.loss(batch)
        loss.backward()
        out[fused] = (st, {n: p.grad.clone() for n, p in tr.model.named_parameters()})
    assert out[True][0]["kl"] > 1e-5
    for key in ("loss", "pg", "kl_term", "kl", "tokens"):
        # the KL is a small difference of fp32 log-probs (~5e-3 here): its rounding is ~1e-5 of it, not of a loss
        rel = 1e-4 if key.startswith("kl") else 1e-5
        assert out[True][0][key] == pytest.approx(out[False][0][key], rel=rel, abs=1e-8), key
    for n, g in out[False][1].items():
        assert_grad_close(out[True][1][n], g, msg=n)


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(tok, tmp_path):
    """``gradient_checkpointing`` (memory for a second forward) must change only when activations exist: each
    decoder layer runs twice per micro-batch (forward, then again in backward), and the step's gradients equal
    those without it."""
    batch = [Sequence(s.input_ids, s.weights, [0.5] * len(s.input_ids)) for s in seqs(4)]
    got = {}
    for gc in (False, True):
        tr = Trainer(tiny(tok), tok, cfg(gradient_checkpointing=gc, max_grad_norm=0), tmp_path / str(gc))
        calls = []
        tr.model.model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))  # pre: a recompute stops early
        grads, stats = _grads_at_step(tr, batch)
        got[gc] = (grads, stats, len(calls), len(tr.micro_batches(batch)))
    assert got[False][2] == got[False][3] and got[True][2] == 2 * got[True][3]  # really recomputed
    assert got[True][1]["loss"] == pytest.approx(got[False][1]["loss"], rel=1e-6)
    for g, w in zip(got[True][0], got[False][0]):
        assert_grad_close(g, w)


# ---------------------------------------------------------------- accumulation and clipping (one process)
def _grads_at_step(tr, batch):
    """The gradient the optimizer steps with (after accumulation and clipping), and the step's stats."""
    seen = {}
    orig = tr.optimizer.step

    def record(*a, **kw):
        seen["g"] = [p.grad.detach().clone() for p in tr.params]
        return orig(*a, **kw)
    tr.optimizer.step = record
    try:
        stats = tr.step(batch)
    finally:
        tr.optimizer.step = orig
    return seen["g"], stats


def _full_batch_grad(tok, tmp_path, batch, **kw):
    tr = Trainer(tiny(tok), tok, cfg(**kw), tmp_path, ref_model=False)
    loss, _ = tr.loss(batch)  # one forward over the whole batch, its own denominator
    loss.backward()
    return [p.grad.detach().clone() for p in tr.params], loss.item()


@pytest.mark.parametrize("norm", ["tokens", "sequences"])
@pytest.mark.parametrize("micro", [{"micro_batch_size": 1}, {"micro_batch_size": 4}, {"micro_batch_tokens": 14}])
def test_micro_batches_accumulate_to_the_full_batch_gradient(tok, tmp_path, norm, micro):
    batch = seqs(6)
    want, want_loss = _full_batch_grad(tok, tmp_path / "full", batch, loss_normalization=norm)
    tr = Trainer(tiny(tok), tok, cfg(loss_normalization=norm, max_grad_norm=0, batch_size=6, **micro), tmp_path / "mb",
                 ref_model=False)
    assert len(tr.micro_batches(batch)) > 1  # really accumulated over several micro-batches
    got, stats = _grads_at_step(tr, batch)
    assert stats["loss"] == pytest.approx(want_loss, rel=1e-5)
    for g, w in zip(got, want):  # fp32 sums in another order (measured against fp64: ~4e-6 for micro-batches
        # of 1 with 2 threads, the fused and the autograd output layer alike; gradients up to 0.7)
        assert_grad_close(g, w)
    assert stats["grad_norm"] == pytest.approx(float(torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(w) for w in want]))), rel=1e-4)


def test_gradient_is_clipped_to_max_grad_norm(tok, tmp_path):
    batch = seqs(6)
    want, _ = _full_batch_grad(tok, tmp_path / "full", batch)
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(w) for w in want])))
    cap = norm / 10
    tr = Trainer(tiny(tok), tok, cfg(max_grad_norm=cap, batch_size=6, micro_batch_size=2), tmp_path / "c",
                 ref_model=False)
    got, stats = _grads_at_step(tr, batch)
    assert stats["grad_norm"] == pytest.approx(norm, rel=1e-4)  # the log shows the norm before clipping
    for g, w in zip(got, want):  # the whole accumulated gradient scaled by cap / norm (same direction)
        assert_grad_close(g, w * (cap / norm))
    # a cap above the norm changes nothing
    tr = Trainer(tiny(tok), tok, cfg(max_grad_norm=10 * norm, batch_size=6, micro_batch_size=2), tmp_path / "n",
                 ref_model=False)
    got, _ = _grads_at_step(tr, batch)
    for g, w in zip(got, want):
        assert_grad_close(g, w)


# ---------------------------------------------------------------- resume
def test_killed_and_resumed_run_matches_uninterrupted(tok, tmp_path):
    data = seqs(10)
    a = Trainer(tiny(tok), tok, cfg(steps=6, save_every=3), tmp_path / "a", ref_model=False)
    a.fit(data)
    # "killed" after the step-3 checkpoint: a fresh process (new model/trainer) trains 3 steps then stops
    b = Trainer(tiny(tok), tok, cfg(steps=6, save_every=3), tmp_path / "b", ref_model=False)
    b.fit(data, steps=3)
    assert b.step_count == 3
    with open(tmp_path / "b" / "train_log.jsonl", "a") as f:  # step 4 was logged, then the kill came
        f.write(json.dumps({"step": 4, "loss": 0.0}) + "\n")
    c = Trainer(tiny(tok), tok, cfg(steps=6, save_every=3), tmp_path / "b", ref_model=False)
    c.fit(data)
    assert c.step_count == 6
    logged = [json.loads(x)["step"] for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]  # the redone step is logged once
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train_log.jsonl").write_text(json.dumps({"step": 1}) + "\n")  # killed before any checkpoint
    assert not Trainer(tiny(tok), tok, cfg(), tmp_path / "d", ref_model=False).resume()
    assert (tmp_path / "d" / "train_log.jsonl").read_text() == ""
    for (n1, p1), (n2, p2) in zip(a.model.state_dict().items(), c.model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert (tmp_path / "b" / "train_log.jsonl").exists()
    assert c.plot(tmp_path / "curves.png").exists()
    from scorebench.machine import rss_gb
    if rss_gb() is not None:  # each step logs the process's resident memory and its peak so far (whole-run memory)
        rows = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
        assert all(0 < r["rss_gb"] <= r["peak_rss_gb"] for r in rows[-3:])


def test_save_policy_loads_with_models_load(tok, tmp_path):
    from scorebench.models import load
    tr = Trainer(tiny(tok), tok, cfg(lora=True, lora_r=2, lora_alpha=4, lora_target_modules=["q_proj", "v_proj"],
                                     lr=5e-2), tmp_path / "t")
    tr.step(seqs(4))
    path = tr.save_policy(tmp_path / "policy")
    assert (path / ".complete").exists()
    m, _ = load(str(path))
    ids = torch.tensor([seqs(1)[0].input_ids])
    with torch.no_grad():
        assert torch.allclose(m(input_ids=ids).logits, tr.model(input_ids=ids).logits, atol=1e-5)
    # with LoRA the reference is the adapter-disabled model: KL > 0 once the adapter moved
    batch = [Sequence(s.input_ids, [0.0] * len(s.input_ids), [1.0] * len(s.input_ids)) for s in seqs(2)]
    assert tr.loss(batch)[1]["kl"] > 0


def test_bf16_lora_checkpointing_after_fp32_trainer(tok, tmp_path):
    Trainer(tiny(tok), tok, cfg(), tmp_path / "a", ref_model=False)
    tr = Trainer(tiny(tok), tok, cfg(dtype="bfloat16", lora=True, gradient_checkpointing=True, kl_estimator="k2",
                                     lr_schedule="cosine", warmup_steps=1), tmp_path / "b")
    assert tr.accelerator.mixed_precision == "bf16"
    batch = [Sequence(s.input_ids, s.weights, [0.1] * len(s.input_ids)) for s in seqs(4)]
    first = tr.step(batch)
    assert math.isfinite(first["loss"]) and first["grad_norm"] > 0
    assert tr.step(batch)["kl"] > 0
