"""The lean RMSNorm / SwiGLU / linear layers (``training/lean.py``): the same outputs bit for bit, the same
gradients, fewer saved activations, and modules of another formula left alone."""
from __future__ import annotations

import copy
import types

import pytest
import torch

from scorebench.training.lean import _linear_forward, _SwiGLU, make_lean


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=101, tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():  # norms away from their all-ones start, so a wrong weight gradient shows
        for n, p in m.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    return m


def count_saved(t, saved: dict):
    """A ``saved_tensors_hooks`` pack hook's body: the bytes kept for backward, each storage once (a tensor two ops
    save is kept once; parameters are not counted)."""
    if not isinstance(t, torch.nn.Parameter):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return t


def _run(model, ids, autocast):
    saved = {}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), \
            torch.autograd.graph.saved_tensors_hooks(lambda t: count_saved(t, saved), lambda t: t):
        logits = model(input_ids=ids).logits
    (logits.float().square().mean()).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(saved.values())


@pytest.mark.parametrize("autocast", [False, True])
def test_same_outputs_and_gradients_fewer_saved_bytes(autocast):
    own = tiny_llama()
    lean = copy.deepcopy(own)
    assert make_lean(lean) == 2 * (2 + 1 + 7) + 1  # per layer two norms, an MLP, 7 linears; the final norm
    assert make_lean(lean) == 0  # twice is once
    ids = torch.randint(0, 101, (3, 17), generator=torch.Generator().manual_seed(1))
    out_own, g_own, b_own = _run(own, ids, autocast)
    out_lean, g_lean, b_lean = _run(lean, ids, autocast)
    assert torch.equal(out_lean, out_own)
    for n, g in g_own.items():
        torch.testing.assert_close(g_lean[n], g, rtol=1e-4 if not autocast else 2e-2,
                                   atol=1e-5 * g.abs().max().item(), msg=n)
    tokens, width, inter = 3 * 17, 32, 64
    elt = 2 if autocast else 4
    # per layer: the normalised input of both norms (fp32) and silu(gate) (compute dtype); the final norm's too
    fewer = 2 * (2 * tokens * width * 4 + tokens * inter * elt) + tokens * width * 4
    if autocast:  # and per layer the linears' bf16 weight copies, and k, v, up's own casts of their input
        weights = 32 * 32 * 2 + 16 * 32 * 2 + 64 * 32 * 2 + 32 * 64
        fewer += 2 * (weights * 2 + 3 * tokens * width * 2 + tokens * inter * 2)  # and down's input
    assert b_own - b_lean == fewer


def _lean_linears_only(model):
    for m in model.modules():
        if type(m) is torch.nn.Linear and m is not model.get_output_embeddings():
            m._own_forward, m.forward = m.forward, types.MethodType(_linear_forward, m)


def _lean_but_norms(model):
    make_lean(model)
    for m in model.modules():
        if type(m).__name__.endswith("RMSNorm"):
            m.forward = m._own_forward


@pytest.mark.parametrize("lean_up", [_lean_linears_only, _lean_but_norms])
@pytest.mark.parametrize("autocast", [False, True])
def test_lean_linears_give_autocasts_gradients_bit_for_bit(autocast, lean_up):
    """The linears alone, and with the MLPs (down's input made again in backward), but not the norms (their
    closed form changes fp32 summation order): outputs and every parameter's gradient equal bit for bit, the
    output layer untouched."""
    own = tiny_llama()
    lean = copy.deepcopy(own)
    lean_up(lean)
    assert getattr(lean.get_output_embeddings(), "_own_forward", None) is None
    ids = torch.randint(0, 101, (3, 17), generator=torch.Generator().manual_seed(1))
    out_own, g_own, b_own = _run(own, ids, autocast)
    out_lean, g_lean, b_lean = _run(lean, ids, autocast)
    assert torch.equal(out_lean, out_own)
    for n, g in g_own.items():
        assert torch.equal(g_lean[n], g), n
    assert b_lean < b_own if (autocast or lean_up is _lean_but_norms) else b_lean == b_own


def test_an_input_changed_in_place_is_cast_again():
    """Projections share one cast of their input only while the input is the same, unchanged tensor."""
    lin = torch.nn.Linear(4, 3)
    lin._own_forward, lin.forward = lin.forward, types.MethodType(_linear_forward, lin)
    x = torch.randn(2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = x * 1.0
        a = lin(h)
        with torch.no_grad():
            h.mul_(2.0)
        b = lin(h)
        want = torch.nn.functional.linear(h.to(torch.bfloat16), lin.weight.to(torch.bfloat16),
                                          lin.bias.to(torch.bfloat16))
    assert torch.equal(b, want) and not torch.equal(a, b)


def test_no_grad_runs_the_modules_own_forward():
    m = tiny_llama()
    make_lean(m)
    calls = []
    norm = m.model.norm
    own = norm._own_forward
    norm._own_forward = lambda x: calls.append(1) or own(x)
    with torch.no_grad():
        m(input_ids=torch.tensor([[1, 2, 3]]))
    assert calls == [1]


def test_a_norm_of_another_formula_is_left_alone():
    m = tiny_llama()
    layer = m.model.layers[0]

    class OnePlus(type(layer.input_layernorm)):  # Gemma-style: x * (1 + w)
        def forward(self, x):
            v = x.pow(2).mean(-1, keepdim=True)
            return (x * torch.rsqrt(v + self.variance_epsilon)) * (1.0 + self.weight)
    odd = OnePlus(32)
    odd.load_state_dict(layer.input_layernorm.state_dict())
    layer.input_layernorm = odd
    assert make_lean(m) == 2 * (2 + 1 + 7) + 1 - 1
    assert getattr(odd, "_own_forward", None) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_gradients_are_autograds_bit_for_bit(dtype):
    g = torch.Generator().manual_seed(2)
    gate, up, d = (torch.randn(5, 7, generator=g).to(dtype) for _ in range(3))
    got = [t.clone().requires_grad_() for t in (gate, up)]
    want = [t.clone().requires_grad_() for t in (gate, up)]
    _SwiGLU.apply(*got).backward(d)
    (torch.nn.functional.silu(want[0]) * want[1]).backward(d)
    for a, b in zip(got, want):
        assert torch.equal(a.grad, b.grad)


def test_lean_linear_with_bias_on_a_batch_of_sequences_bit_for_bit():
    g = torch.Generator().manual_seed(3)
    own = torch.nn.Linear(6, 5)
    lean = copy.deepcopy(own)
    lean._own_forward, lean.forward = lean.forward, types.MethodType(_linear_forward, lean)
    x = torch.randn(2, 3, 6, generator=g)
    grads = []
    for m in (own, lean):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(xi)
        y.float().square().sum().backward()
        grads.append((y.detach(), xi.grad, m.weight.grad, m.bias.grad))
    for a, b in zip(*grads):
        assert a.dtype == b.dtype and torch.equal(a, b)
