"""The fast engine path against transformers ``generate`` and the model's own softmax (embedded SmolLM2-135M)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from scorebench.engines.base import SamplingParams
from scorebench.engines.hf import HFEngine

PROMPTS = ["Hi", "What is 2+3?", "Write a haiku about the sea, the sky and the long road home.",
           "Explain gravity in one sentence, with a simple example for a child who likes apples and trees.",
           "Name a color."]


def conv(text):
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def mt():
    from scorebench import models
    torch.manual_seed(0)
    return models.load(None)


@pytest.fixture(scope="module")
def plain(mt):
    return HFEngine(model=mt[0], tokenizer=mt[1], fast=False, batch_size=8)


@pytest.fixture(scope="module")
def fast32(mt):
    return HFEngine(model=mt[0], tokenizer=mt[1], compute_dtype="float32", batch_size=8)


def ids(outs):
    return [[c.token_ids for c in cs] for cs in outs]


@torch.no_grad()
def probs_after(model, prompt_ids):
    return torch.softmax(model(torch.tensor([prompt_ids])).logits[0, -1].float(), -1)


def test_fast_is_default_and_described(mt):
    e = HFEngine(model=mt[0], tokenizer=mt[1])
    assert e.describe()["path"] == "fast"
    assert HFEngine(model=mt[0], tokenizer=mt[1], fast=False).describe()["path"] == "generate"


def test_prefill_logits_match_model(mt, fast32):
    m, tok = mt
    p = fast32.render(conv(PROMPTS[3]))
    fast32._runner.maybe_refresh()
    _, logits = fast32._runner.prefill(p)
    with torch.no_grad():
        ref = m(torch.tensor([p])).logits[0, -1]
    assert (logits - ref).abs().max() < 1e-3


@pytest.mark.parametrize("batched", [False, True])  # True: one padded batched call (the CUDA default)
def test_prefill_many_keeps_prompts_apart(mt, fast32, batched):
    """Prompts of different lengths prefilled together (stacked, no padding) give each prompt the logits the model
    gives it alone, and K/V of its own length: attention does not leak across prompts."""
    m, tok = mt
    ps = [fast32.render(conv(t)) for t in PROMPTS]
    fast32._runner.maybe_refresh()
    was = fast32._runner.batched_attention
    fast32._runner.batched_attention = batched
    try:
        outs = fast32._runner.prefill_many(ps)
    finally:
        fast32._runner.batched_attention = was
    for p, (kv, logits) in zip(ps, outs):
        with torch.no_grad():
            ref = m(torch.tensor([p])).logits[0, -1]
        assert (logits - ref).abs().max() < 1e-3
        assert kv[0][0].shape[1] == len(p) and kv[-1][1].shape[1] == len(p)


def test_batched_prefill_attention_is_per_prompt_not_over_all_tokens(mt, fast32, monkeypatch):
    """The batched prefill (CUDA's) attends over [prompts, heads, longest prompt] without a mask, not over one
    [all tokens x all tokens] block-diagonal mask: the latter's cost grows with the square of the batch's total
    length (the first GPU check: 2.29 s to the first token of a 256-row fp32 batch)."""
    from scorebench.engines.fast import model as fm
    ps = [fast32.render(conv(t)) for t in PROMPTS]
    fast32._runner.maybe_refresh()
    seen, real = [], F.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        seen.append((tuple(q.shape), kw.get("attn_mask") is None, kw.get("is_causal")))
        return real(q, k, v, *a, **kw)
    monkeypatch.setattr(fm.F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(fast32._runner, "batched_attention", True)
    fast32._runner.prefill_many(ps)
    H = fast32._runner.n_heads
    assert seen and all(s == ((len(ps), H, max(map(len, ps)), fast32._runner.head_dim), True, True) for s in seen)


@pytest.mark.parametrize("batch_size", [8, 2])  # 2: rows finish and are refilled / compacted mid-run
def test_greedy_equals_generate(plain, fast32, batch_size):
    convs = [conv(t) for t in PROMPTS]
    p = SamplingParams(temperature=0, max_new_tokens=12)
    fast32.batch_size = batch_size
    try:
        got = fast32.generate(convs, p)
    finally:
        fast32.batch_size = 8
    ref = plain.generate(convs, p)
    assert ids(got) == ids(ref)
    assert [c[0].finish_reason for c in got] == [c[0].finish_reason for c in ref]


def test_bf16_close_to_fp32(mt):
    """bf16 weights shift logits by up to ~0.3: the next-token distribution stays within a few % TV of fp32."""
    m, _ = mt
    bf = HFEngine(model=m, tokenizer=mt[1], compute_dtype="bfloat16", batch_size=8)
    bf._runner.maybe_refresh()
    agree = 0
    for t in PROMPTS:
        p = bf.render(conv(t))
        _, lg = bf._runner.prefill(p)
        ref = probs_after(m, p)
        tv = 0.5 * float((lg.softmax(-1) - ref).abs().sum())
        assert tv < 0.06, (t, tv)
        agree += int(lg.argmax()) == int(ref.argmax())
    assert agree >= len(PROMPTS) - 1


def test_packed_weights_change_nothing(mt):
    """oneDNN-prepacked bf16 weights (the default on a bf16-native CPU) give bit-identical logits and samples to
    plain bf16 ``F.linear``, through prefill, decode, refill and sampling."""
    from scorebench.engines.fast.weights import can_pack
    m, tok = mt
    packed = HFEngine(model=m, tokenizer=tok, compute_dtype="bfloat16", batch_size=3)
    plain_bf = HFEngine(model=m, tokenizer=tok, compute_dtype="bfloat16", batch_size=3, pack=False)
    assert packed.describe()["packed"] == can_pack(torch.bfloat16, "cpu")
    assert not plain_bf.describe()["packed"]
    if not packed._runner.packed:
        pytest.skip("this CPU has no native bf16: nothing is packed")
    packed.refresh(), plain_bf.refresh()
    p = packed.render(conv(PROMPTS[2]))
    assert torch.equal(packed._runner.prefill(p)[1], plain_bf._runner.prefill(p)[1])
    convs = [conv(t) for t in PROMPTS]
    for sp in (SamplingParams(temperature=0, max_new_tokens=16),
               SamplingParams(temperature=1.0, max_new_tokens=16, n=2, seed=7)):
        assert ids(packed.generate(convs, sp)) == ids(plain_bf.generate(convs, sp))


def test_finish_reason_and_eos_cut(fast32):
    out = fast32.generate([conv("Hi"), conv(PROMPTS[3])], SamplingParams(temperature=0, max_new_tokens=40))
    hi = out[0][0]
    assert hi.finish_reason == "stop" and hi.token_ids[-1] in fast32.eos_ids
    assert all(t not in fast32.eos_ids for t in hi.token_ids[:-1])
    assert "<|im_end|>" not in hi.text and hi.prompt_ids == fast32.render(conv("Hi"))
    short = fast32.generate([conv(PROMPTS[3])], SamplingParams(temperature=0, max_new_tokens=3))[0][0]
    assert short.finish_reason == "length" and len(short.token_ids) == 3
    one = fast32.generate([conv(PROMPTS[3])], SamplingParams(temperature=1.0, max_new_tokens=1, n=3))[0]
    assert all(len(c.token_ids) == 1 for c in one)


def test_seeds_reproducible(mt):
    e = HFEngine(model=mt[0], tokenizer=mt[1], batch_size=4)
    convs = [conv(PROMPTS[2]), conv(PROMPTS[4])]
    p = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, n=3, seed=7)
    a, b = ids(e.generate(convs, p)), ids(e.generate(convs, p))
    assert a == b
    assert len(a) == 2 and all(len(x) == 3 for x in a)
    assert len({tuple(x) for x in a[0]}) > 1  # the n samples differ
    c = ids(e.generate(convs, SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, n=3, seed=8)))
    assert c != a
    # a sample's generator is keyed by (seed, conversation index, k), not by the slot it lands in: the first
    # token (drawn from the conversation's own prefill) is the same whatever the batch size
    e.batch_size = 1
    one = ids(e.generate(convs, p))
    assert [[s[0] for s in x] for x in one] == [[s[0] for s in x] for x in a]


def _check_counts(counts: dict, probs: torch.Tensor, n: int, top: int = 8):
    """Chi-square of the empirical counts against ``probs`` over the ``top`` likeliest tokens + the rest."""
    top_ids = probs.topk(top).indices.tolist()
    exp = [n * float(probs[t]) for t in top_ids]
    obs = [counts.get(t, 0) for t in top_ids]
    exp.append(n - sum(exp))
    obs.append(n - sum(obs))
    cells = [(o, e) for o, e in zip(obs, exp) if e >= 5]
    rest_o = sum(o for o, e in zip(obs, exp) if e < 5)
    rest_e = sum(e for o, e in zip(obs, exp) if e < 5)
    if rest_e > 0:
        cells.append((rest_o, rest_e))
    chi2 = sum((o - e) ** 2 / e for o, e in cells)
    df = len(cells) - 1
    # 99.9% quantile approximated by Wilson-Hilferty; generous so a fixed seed never flakes on a correct sampler
    z = 3.1
    crit = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    assert chi2 < crit, (chi2, crit, obs, exp)
    tv = 0.5 * sum(abs(o - e) / n for o, e in zip(obs, exp))
    assert tv < 0.08, tv


@pytest.mark.parametrize("top_p", [1.0, 0.7])
def test_sampling_distribution(mt, fast32, top_p):
    m, _ = mt
    n = 600
    c = conv("Tell me a random animal.")
    p_ids = fast32.render(c)
    out = fast32.generate([c], SamplingParams(temperature=1.0, top_p=top_p, max_new_tokens=2, n=n, seed=3))[0]
    probs = probs_after(m, p_ids)

    def nucleus(pr):
        if top_p >= 1:
            return pr
        v, i = pr.sort(descending=True)
        keep = (v.cumsum(0) - v) < top_p
        q = torch.zeros_like(pr)
        q[i[keep]] = v[keep]
        return q / q.sum()

    q1 = nucleus(probs)
    first = [o.token_ids[0] for o in out]
    counts = {}
    for t in first:
        counts[t] = counts.get(t, 0) + 1
    assert all(q1[t] > 0 for t in counts)  # nothing outside the nucleus
    _check_counts(counts, q1, n)
    # second token, conditioned on the commonest first token: exercises the batched decode step's sampler
    t0 = max(counts, key=counts.get)
    seconds = [o.token_ids[1] for o in out if o.token_ids[0] == t0 and len(o.token_ids) > 1]
    q2 = nucleus(probs_after(m, p_ids + [t0]))
    c2 = {}
    for t in seconds:
        c2[t] = c2.get(t, 0) + 1
    assert all(q2[t] > 0 for t in c2)
    if len(seconds) >= 100:
        _check_counts(c2, q2, len(seconds), top=5)


def test_live_weight_change_is_seen(mt):
    m = copy.deepcopy(mt[0])
    e = HFEngine(model=m, tokenizer=mt[1], compute_dtype="float32")
    ref = HFEngine(model=m, tokenizer=mt[1], fast=False)
    c = [conv(PROMPTS[1])]
    p = SamplingParams(temperature=0, max_new_tokens=6)
    before = ids(e.generate(c, p))
    with torch.no_grad():  # what an optimizer step does: an in-place update of a parameter
        m.model.layers[3].mlp.down_proj.weight.mul_(-3.0)
        m.model.layers[7].self_attn.o_proj.weight.add_(0.05)
    after = ids(e.generate(c, p))
    assert after != before
    assert after == ids(ref.generate(c, p))
    e.refresh()  # explicit refresh is allowed and harmless
    assert ids(e.generate(c, p)) == after


def test_peft_lora_model(mt):
    peft = pytest.importorskip("peft")
    base = copy.deepcopy(mt[0])
    pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, prm in pm.named_parameters():
            if "lora_B" in name:
                prm.normal_(0, 0.02)
    e = HFEngine(model=pm, tokenizer=mt[1], compute_dtype="float32")
    ref = HFEngine(model=pm, tokenizer=mt[1], fast=False)
    assert e.describe()["path"] == "fast"
    c = [conv(PROMPTS[1]), conv(PROMPTS[0])]
    p = SamplingParams(temperature=0, max_new_tokens=8)
    assert ids(e.generate(c, p)) == ids(ref.generate(c, p))
    with torch.no_grad():
        for name, prm in pm.named_parameters():
            if "lora_B" in name:
                prm.mul_(4.0)
    assert ids(e.generate(c, p)) == ids(ref.generate(c, p))


@pytest.mark.parametrize("V", [49152, 1000, 257, 3])
def test_two_level_inverse_cdf_equals_full_cumsum(V):
    """The blockwise draw picks the same token as a full-vocabulary float64 inverse CDF, with zero-probability
    tokens (never drawn) and a vocabulary that is not a multiple of the block."""
    from scorebench.engines.hf import inverse_cdf
    g = torch.Generator().manual_seed(V)
    for _ in range(10):
        probs = torch.softmax(torch.randn(32, V, generator=g) * 4, -1)
        probs[:, ::3] = 0  # a third of the vocabulary impossible
        u = torch.rand(32, generator=g, dtype=torch.float64)
        cdf = probs.double().cumsum(-1)
        ref = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).clamp_(max=V - 1).squeeze(1)
        got = inverse_cdf(probs, u)
        assert torch.equal(got, ref)
        assert bool((probs.gather(1, got.unsqueeze(1)) > 0).all())


# -- the counter-based uniforms and the fixed-shape (CUDA graph) schedule ----------------------------------------
def test_uniforms_equal_their_python_definition():
    """int64 tensor arithmetic must wrap exactly as the 64-bit definition does, for keys across the 63-bit range."""
    from scorebench.engines.sampling import uniform_reference, uniforms
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 2 ** 63 - 1, (500,), generator=g, dtype=torch.long)
    ctr = torch.randint(0, 5000, (500,), generator=g, dtype=torch.long)
    keys[:3] = torch.tensor([0, 1, 2 ** 63 - 1])
    got = uniforms(keys, ctr).tolist()
    assert got == [uniform_reference(int(k), int(c)) for k, c in zip(keys, ctr)]
    u = uniforms(torch.full((20000,), 12345, dtype=torch.long), torch.arange(20000))
    assert 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003
    assert len(set(u.tolist())) == 20000


def test_decode_mode_choice(mt):
    e = HFEngine(model=mt[0], tokenizer=mt[1])
    assert e.describe()["decode"] == "dynamic"  # the CPU default
    assert HFEngine(model=mt[0], tokenizer=mt[1], decode="static").describe()["decode"] == "static"
    with pytest.raises(ValueError, match="CUDA"):
        HFEngine(model=mt[0], tokenizer=mt[1], decode="graph")
    with pytest.raises(ValueError, match="decode must be one of"):
        HFEngine(model=mt[0], tokenizer=mt[1], decode="fastest")


# 2: slots finish, idle and are refilled mid-run (95 s on 2 CPU cores: make test-full; 8 runs in make test)
@pytest.mark.parametrize("batch_size", [8, pytest.param(2, marks=pytest.mark.full)])
def test_static_schedule_equals_dynamic_and_generate(mt, plain, fast32, batch_size):
    static = HFEngine(model=mt[0], tokenizer=mt[1], compute_dtype="float32", batch_size=batch_size, decode="static")
    convs = [conv(p) for p in PROMPTS]
    g = SamplingParams(temperature=0, max_new_tokens=12)
    assert ids(static.generate(convs, g)) == ids(plain.generate(convs, g))
    assert static.last_stats["decode"] == "static" and static.last_stats["slots"] == min(batch_size, len(convs))
    # sampled: the same streams, whatever the schedule (fp32, so the logits agree to far below a draw's margin)
    fast32.batch_size = batch_size
    for top_p in (1.0, 0.8):
        s = SamplingParams(temperature=1.0, top_p=top_p, max_new_tokens=12, n=3, seed=11)
        a, b = static.generate(convs, s), fast32.generate(convs, s)
        assert ids(a) == ids(b)
        for ca, cb in zip(a, b):
            for x, y in zip(ca, cb):
                assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)
    fast32.batch_size = 8


def test_static_sampling_distribution(mt):
    """The fixed-shape step's sampler (whole-vocabulary sort for the nucleus) draws from the model's softmax."""
    static = HFEngine(model=mt[0], tokenizer=mt[1], compute_dtype="float32", batch_size=64, decode="static")
    c = conv("Tell me a random animal.")
    out = static.generate([c], SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=2, n=600, seed=5))[0]
    probs = probs_after(mt[0], static.render(c))
    v, i = probs.sort(descending=True)
    keep = (v.cumsum(0) - v) < 0.9
    q = torch.zeros_like(probs)
    q[i[keep]] = v[keep]
    q /= q.sum()
    counts = {}
    for o in out:
        counts[o.token_ids[0]] = counts.get(o.token_ids[0], 0) + 1
    assert all(q[t] > 0 for t in counts)
    _check_counts(counts, q, len(out))


def test_refresh_keeps_captured_addresses(mt):
    """A CUDA graph reads the snapshot by address: with a captured state, a refresh must write the new weights
    into the same tensors (and drop the states when a shape changed) — checked here with a stand-in graph."""
    m = copy.deepcopy(mt[0])  # unpacked, as on the GPU (the only place graphs are captured, and never packed)
    e = HFEngine(model=m, tokenizer=mt[1], compute_dtype="float32", decode="static", pack=False)
    e._runner.pack_head = False
    e.generate([conv("Hi")], SamplingParams(temperature=0, max_new_tokens=2))
    r = e._runner
    (st,) = r.static.values()
    st.graph = object()  # what a capture leaves; replay is not called below
    qkv, lm = r.layers[2][1], r.lm_head
    with torch.no_grad():
        m.model.layers[2].self_attn.k_proj.weight.add_(1.0)
    r.maybe_refresh()
    assert r.layers[2][1] is qkv and r.lm_head is lm and r.static
    k0 = r.n_heads * r.head_dim
    assert torch.equal(qkv[k0:k0 + 8], m.model.layers[2].self_attn.k_proj.weight[:8])
    r._cos = r._cos[:16]  # a rope table too short for the next run is rebuilt, and the states that read it dropped
    r._rope_table(4096)
    assert not r.static


def test_released_weights_are_rebuilt_from_the_live_model(mt):
    """``release_weights`` (before each trainer step) frees the snapshot; the next generate rebuilds it from the
    model as it is then, weight change included."""
    m = copy.deepcopy(mt[0])
    e = HFEngine(model=m, tokenizer=mt[1], compute_dtype="float32")
    c = [conv(PROMPTS[1])]
    p = SamplingParams(temperature=0, max_new_tokens=6)
    before = ids(e.generate(c, p))
    e.release_weights()
    assert e._runner.layers is None and e._runner._snapshot is None
    assert ids(e.generate(c, p)) == before
    e.release_weights()
    with torch.no_grad():
        m.model.layers[3].mlp.down_proj.weight.mul_(-3.0)
    assert ids(e.generate(c, p)) == ids(HFEngine(model=m, tokenizer=mt[1], fast=False).generate(c, p)) != before


def _second_turns(tok, convs, firsts):
    from scorebench.api.protocol import SELF_CORRECTION_INSTRUCTION
    return [c + [{"role": "assistant", "content": f[0].text}, {"role": "user", "content": SELF_CORRECTION_INSTRUCTION}]
            for c, f in zip(convs, firsts)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_second_turn_reuses_first_turns_kv(mt, dtype):
    """A second turn prefills only what follows the first turn's answer (K/V kept from decoding it) and gives the
    prefill logits of a prefill from scratch — greedy second turns identical in fp32, the drawn tokens' log-probs
    within bf16's own noise in bf16 — while a budget of 0 reuses nothing."""
    m, tok = mt
    convs = [conv(t) for t in PROMPTS]
    kept = HFEngine(model=m, tokenizer=tok, compute_dtype=dtype, batch_size=3)
    fresh = HFEngine(model=m, tokenizer=tok, compute_dtype=dtype, batch_size=3, keep_kv_mb=0)
    p1 = SamplingParams(temperature=0, max_new_tokens=40)
    firsts = kept.generate(convs, p1)
    assert ids(firsts) == ids(fresh.generate(convs, p1))
    second = _second_turns(tok, convs, firsts)
    p2 = SamplingParams(temperature=0.7, max_new_tokens=24, n=2, seed=3) if dtype == "bfloat16" else \
        SamplingParams(temperature=0, max_new_tokens=24)
    got = kept.generate(second, p2)
    reused = kept.last_stats["reused_prompt_tokens"]
    finished = [f[0] for f in firsts if f[0].finish_reason == "stop"]
    assert finished and any(f[0].finish_reason == "length" for f in firsts)  # both cases are exercised
    # every finished first turn serves its prompt and answer, less the last token, which was never fed; a cut
    # one serves as much as its text re-renders to the same tokens
    assert sum(len(f.prompt_ids) + len(f.token_ids) - 1 for f in finished) <= reused \
        <= sum(len(f[0].prompt_ids) + len(f[0].token_ids) - 1 for f in firsts)
    want = fresh.generate(second, p2)
    assert fresh.last_stats["reused_prompt_tokens"] == 0
    if dtype == "float32":
        assert ids(got) == ids(want)
    else:  # up to a sample's first differing token both drew the same prefix: log-probs agree as bf16 allows
        gaps = []  # (bf16's own floor, results/signal-arith/bf16-floor.json: 1.2e-2 mean per token)
        for a, b in zip(got, want):
            for ca, cb in zip(a, b):
                n = next((i for i, (x, y) in enumerate(zip(ca.token_ids, cb.token_ids)) if x != y),
                         min(len(ca.token_ids), len(cb.token_ids)))
                gaps += [abs(x - y) for x, y in zip(ca.logprobs[:n], cb.logprobs[:n])]
        assert len(gaps) > 20 and sum(gaps) / len(gaps) < 0.03 and max(gaps) < 0.5
    # the prefill from kept K/V gives the logits of a prefill from scratch
    kept.generate(convs, p1)
    run = kept._runner
    run.start_call()
    for c in second:
        p = kept.render(c)
        n, _ = run.lookup(p)
        (_, a), = run.prefill_many([p])
        (_, b), = fresh._runner.prefill_many([p])
        assert (a - b).abs().max() < (1e-3 if dtype == "float32" else 0.35), n
    assert run.reused_tokens > 0


def test_kept_kv_stays_within_its_budget(mt):
    """The K/V kept for the next call, with what the last call kept while this one runs, never exceeds
    ``keep_kv_mb``: a budget for about two first turns serves about two second turns, and nothing more."""
    m, tok = mt
    convs = [conv(t) for t in PROMPTS]
    per_token = 2 * m.config.num_hidden_layers * m.config.num_key_value_heads * 64 * 4  # fp32 K and V
    small = HFEngine(model=m, tokenizer=tok, compute_dtype="float32", batch_size=3,
                     keep_kv_mb=2 * 120 * per_token / 2 ** 20)
    firsts = small.generate(convs, SamplingParams(temperature=0, max_new_tokens=40))
    run = small._runner
    held = run._kept_bytes
    assert 0 < held <= run.keep_kv_bytes and 1 <= len(run.kept) < len(PROMPTS)
    def nbytes(d):
        return sum(2 * sum(k.numel() * k.element_size() for k, _ in kv) for kv in d.values())
    seen = []
    orig = run.keep
    run.keep = lambda *a: (orig(*a), seen.append(nbytes(run.kept) + nbytes(run.prev)))
    small.generate(_second_turns(tok, convs, firsts), SamplingParams(temperature=0, max_new_tokens=8))
    assert 0 < small.last_stats["reused_prompt_tokens"] and seen
    assert max(seen) <= run.keep_kv_bytes  # what this call keeps and what the last one kept, together
    assert nbytes(run.kept) == run._kept_bytes <= run.keep_kv_bytes


def test_fp32_packed_weights_give_the_same_greedy_turns(mt, plain):
    """fp32 weights packed for oneDNN (the CPU default now) differ from ``F.linear`` only in summation order: prefill
    logits within 1e-4, greedy samples identical to unpacked ones and to transformers ``generate``."""
    m, tok = mt
    packed = HFEngine(model=m, tokenizer=tok, compute_dtype="float32", batch_size=3)
    unpacked = HFEngine(model=m, tokenizer=tok, compute_dtype="float32", batch_size=3, pack=False)
    from scorebench import onednn
    if not onednn.usable(torch.float32, "cpu"):
        pytest.skip("no oneDNN on this build")
    assert packed.describe()["packed"] and not unpacked.describe()["packed"]
    p = packed.render(conv(PROMPTS[3]))
    for e in (packed, unpacked):
        e._runner.maybe_refresh()
    (_, a), = packed._runner.prefill_many([p])
    (_, b), = unpacked._runner.prefill_many([p])
    assert 0 < float((a - b).abs().max()) < 1e-4  # not the same kernel, the same numbers
    convs = [conv(t) for t in PROMPTS]
    params = SamplingParams(temperature=0, max_new_tokens=12)
    assert ids(packed.generate(convs, params)) == ids(unpacked.generate(convs, params)) == ids(plain.generate(convs, params))


def test_kept_kv_is_dropped_when_the_weights_change(mt):
    """K/V kept from one call were computed with that call's weights: after a weight update (an optimizer step) the
    next call must prefill from scratch, and gives what a fresh engine gives."""
    m = copy.deepcopy(mt[0])
    tok = mt[1]
    convs = [conv(t) for t in PROMPTS[:3]]
    e = HFEngine(model=m, tokenizer=tok, compute_dtype="float32", batch_size=3)
    firsts = e.generate(convs, SamplingParams(temperature=0, max_new_tokens=16))
    with torch.no_grad():
        m.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    second = _second_turns(tok, convs, firsts)
    got = e.generate(second, SamplingParams(temperature=0, max_new_tokens=8))
    assert e.last_stats["reused_prompt_tokens"] == 0
    fresh = HFEngine(model=m, tokenizer=tok, compute_dtype="float32", batch_size=3, keep_kv_mb=0)
    assert ids(got) == ids(fresh.generate(second, SamplingParams(temperature=0, max_new_tokens=8)))


def test_a_calls_kv_caches_are_views_of_one_zeroed_block(fast32, monkeypatch):
    """Every layer's key and value cache of a call sits in one block (``FastLlama.kv_cache``): one allocation far
    above glibc's mmap threshold, handed back whole when the call ends, instead of 2 x 30 heap blocks that a
    longer second turn no longer fits (the heap then grows and a trainer step touches its free pages). The decode
    path really uses it: a greedy call through it still equals ``generate``'s turn (``test_greedy_equals_generate``
    with this same engine) and allocates exactly one such block."""
    r = fast32._runner
    r.maybe_refresh()
    kc, vc = r.kv_cache(3, 17)
    n = len(r.layers)
    assert len(kc) == len(vc) == n
    assert {t.untyped_storage().data_ptr() for t in kc + vc} == {kc[0].untyped_storage().data_ptr()}
    assert kc[0].shape == (3, r.n_kv, r.head_dim, 17) and vc[0].shape == (3, r.n_kv, 17, r.head_dim)
    spans = sorted((t.storage_offset(), t.storage_offset() + t.numel()) for t in kc + vc)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no two layers overlap
    assert kc[0].untyped_storage().nbytes() == sum(t.numel() for t in kc + vc) * kc[0].element_size()
    assert all(not t.any() for t in kc + vc)
    made = []
    real = type(r).kv_cache
    monkeypatch.setattr(type(r), "kv_cache", lambda self, S, T: made.append((S, T)) or real(self, S, T))
    fast32.generate([conv(PROMPTS[1])], SamplingParams(temperature=0, max_new_tokens=4))
    assert len(made) == 1
