"""Shared prompts (training/prompts.py): each prompt several sequences start with runs once per step, as their
past; the step's loss and gradients must be those of whole sequences, and fewer tokens must go through the
decoder."""
from __future__ import annotations

import pytest
import torch

from scorebench.training import Sequence, TrainConfig, Trainer
from scorebench.training.prompts import plan, trained_from

from test_lean import count_saved



@pytest.fixture(scope="module")
def tok(tokenizer):
    return tokenizer


def tiny(tok):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tok),
                                        tie_word_embeddings=True))


def group_seqs(seed=0):
    """Three prompts with 3, 2 and 1 samples, and a sequence whose untrained head extends prompt 0 (a second
    attempt that starts a sequence of its own). Responses carry advantages and KL coefficients."""
    g = torch.Generator().manual_seed(seed)
    out = []
    prompts = [torch.randint(0, 1000, (n,), generator=g).tolist() for n in (6, 4, 7)]
    for p, samples in zip(prompts, (3, 2, 1)):
        for i in range(samples):
            r = torch.randint(0, 1000, (3 + 2 * i,), generator=g).tolist()
            adv = float(torch.randn((), generator=g))
            out.append(Sequence(p + r, [0.0] * len(p) + [adv] * len(r), [0.0] * len(p) + [0.1] * len(r)))
    longer = prompts[0] + torch.randint(0, 1000, (5,), generator=g).tolist()
    r = torch.randint(0, 1000, (4,), generator=g).tolist()
    out.append(Sequence(longer + r, [0.0] * len(longer) + [0.7] * len(r), [0.0] * len(longer) + [0.1] * len(r)))
    return out, prompts


def test_plan_finds_shared_prompts_and_the_longest_one_a_head_starts_with():
    seqs, prompts = group_seqs()
    assert trained_from(seqs[0]) == len(prompts[0]) - 1  # the last prompt position predicts the first answer token
    shared, which = plan(seqs)
    # a prompt's last token is the position that predicts the answer, so it is not part of the shared head
    assert shared == [tuple(prompts[0][:-1]), tuple(prompts[1][:-1])]
    assert which == [0, 0, 0, 1, 1, -1, 0]  # the lone prompt is not shared; the longer head shares prompt 0
    assert plan([Sequence([1, 2, 3], [0, 0, 0], [0, 0, 0])] * 2) == ([], [-1, -1])  # nothing trained: no head


def _step_grads(tok, tmp_path, share: bool, micro: int, lora: bool = False, estimator="full", dtype="float32",
                saved=None):
    torch.manual_seed(0)
    model = tiny(tok)
    tr = Trainer(model, tok, TrainConfig(lr=1e-2, batch_size=8, micro_batch_size=micro, share_prompts=share,
                                         kl_estimator=estimator, lora=lora, lora_r=4, lora_alpha=8, dtype=dtype),
                 tmp_path / f"{share}{micro}{lora}{estimator}{dtype}{saved is None}", temperature=0.7)
    with torch.no_grad():  # move the policy off the reference so the KL term has a gradient
        for p in tr.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    seqs, _ = group_seqs()
    tokens = []
    embed = tr.model.get_input_embeddings()
    hook = embed.register_forward_pre_hook(lambda m, a: tokens.append(a[0].numel()))
    shared = tr.shared_prompts(seqs)
    if share:
        assert shared is not None and len(shared.prompts) == 2
    else:
        assert shared is None
    tr.optimizer.zero_grad()
    total = 0.0
    for mb in tr.micro_batches(seqs, shared):
        kept = {}  # per micro-batch: a storage freed by one micro-batch may come back at the same address
        with torch.autograd.graph.saved_tensors_hooks(lambda t: count_saved(t, kept), lambda t: t):
            loss, _ = tr.loss(mb, denom=len(seqs), shared=shared)
        if saved is not None:
            saved.append(sum(kept.values()))
        loss.backward()
        total += float(loss.detach())
    if shared is not None:
        shared.backward()
    hook.remove()
    grads = {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    return total, grads, sum(tokens)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_past_mask_built_once_gives_the_same_bits_and_is_kept_once(tok, tmp_path, monkeypatch, dtype):
    """``past_attention_mask``: every layer shares one additive mask instead of converting the boolean mask
    transformers builds from the 2-D one, and keeping its own copy; nothing else changes."""
    from scorebench.training import token_loss
    s_new, s_old = [], []
    new = _step_grads(tok, tmp_path, True, 3, dtype=dtype, saved=s_new)
    monkeypatch.setattr(token_loss, "past_attention_mask", lambda mask, width, decoder: mask)  # the 2-D mask
    old = _step_grads(tok, tmp_path, True, 3, dtype=dtype, saved=s_old)
    assert new[0] == old[0]
    for name, g in old[1].items():
        assert torch.equal(new[1][name], g), name
    # the tiny model has 2 layers: each micro-batch with a past kept two (rows, 1, length, past + length) masks
    # of the compute dtype, now one
    seqs, _ = group_seqs()
    tr = Trainer(tiny(tok), tok, TrainConfig(batch_size=8, micro_batch_size=3), tmp_path / "shapes")
    sh = tr.shared_prompts(seqs)
    elt = 2 if dtype == "bfloat16" else 4
    masks = [len(mb) * length * (sh.ids.shape[1] + length) * elt for mb in tr.micro_batches(seqs, sh)
             if sh.past(mb) is not None for length in [max(len(s.input_ids) - sh.start(s) for s in mb)]]
    assert masks and [o - n for o, n in zip(s_old, s_new)] == masks


@pytest.mark.parametrize("micro,lora,estimator", [(2, False, "full"), (3, False, "k2"), (7, True, "full")])
def test_shared_prompts_give_the_loss_and_gradients_of_whole_sequences(tok, tmp_path, micro, lora, estimator):
    loss0, g0, _ = _step_grads(tok, tmp_path, False, micro, lora, estimator)
    loss1, g1, _ = _step_grads(tok, tmp_path, True, micro, lora, estimator)
    assert loss1 == pytest.approx(loss0, rel=1e-5, abs=1e-6)
    assert g0.keys() == g1.keys() and g0
    for name in g0:
        assert g0[name].abs().max() > 0, name  # every trained tensor gets a gradient, prompts' layers included
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-4, atol=1e-6, msg=name)


def test_shared_prompts_run_each_prompt_once(tok, tmp_path):
    seqs, prompts = group_seqs()
    _, _, unshared = _step_grads(tok, tmp_path, False, 2)
    _, _, shared = _step_grads(tok, tmp_path, True, 2)
    tr = Trainer(tiny(tok), tok, TrainConfig(batch_size=8, micro_batch_size=2), tmp_path / "count")
    sh = tr.shared_prompts(seqs)

    def padded(mbs, start):  # tokens of right-padded micro-batches, each sequence from ``start``
        return sum(len(mb) * max(len(s.input_ids) - start(s) for s in mb) for mb in mbs)
    # the policy's decoder (the reference is a copy with its own): every micro-batch once
    assert unshared == padded(tr.micro_batches(seqs), lambda s: 0)
    width = max(len(p) - 1 for p in prompts[:2])
    # shared: each sequence from its prompt's end; the two prompts (padded to the longer) run twice: without
    # gradients before the micro-batches and with gradients at the end of the step
    assert shared == padded(tr.micro_batches(seqs, sh), sh.start) + 2 * 2 * width
    assert shared < unshared


def test_shared_prompts_stand_aside_where_they_cannot_apply(tok, tmp_path):
    seqs, _ = group_seqs()
    tr = Trainer(tiny(tok), tok, TrainConfig(batch_size=8, gradient_checkpointing=True), tmp_path / "gc")
    assert tr.shared_prompts(seqs) is None  # transformers drops a past under gradient checkpointing
    tr = Trainer(tiny(tok), tok, TrainConfig(batch_size=8, share_prompts=False), tmp_path / "off")
    assert tr.shared_prompts(seqs) is None
    tr = Trainer(tiny(tok), tok, TrainConfig(batch_size=8), tmp_path / "on")
    assert tr.shared_prompts(seqs[5:6] + seqs[3:4]) is None  # no prompt shared by two sequences
    stats = tr.step(seqs)  # and a whole step with them runs and logs every token
    assert stats["total_tokens"] == sum(len(s.input_ids) for s in seqs)
