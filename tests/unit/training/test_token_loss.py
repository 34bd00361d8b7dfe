"""The fused, chunked output-layer loss equals the unfused one autograd differentiates: value and gradients."""
import pytest
import torch
import torch.nn.functional as F

from scorebench.training.token_loss import fused_token_loss


def _unfused(h, w, targets, ws, ks, h_ref, w_ref, T, estimator):
    logits = (h @ w.t()) / T
    logp_all = torch.log_softmax(logits, -1)
    pg = -(ws * logp_all.gather(-1, targets[:, None]).squeeze(-1)).sum()
    sel = ks != 0
    logq = torch.log_softmax((h_ref @ w_ref.t()) / T, -1)
    logp = logp_all[sel]
    if estimator == "full":
        kl = (logp.exp() * (logp - logq)).sum(-1)
    else:
        t = targets[sel]
        kl = 0.5 * (logp.gather(-1, t[:, None]).squeeze(-1) - logq.gather(-1, t[:, None]).squeeze(-1)) ** 2
    kl_term = (ks[sel] * kl).sum()
    return pg + kl_term, pg, kl.sum(), kl_term


@pytest.mark.parametrize("estimator", ["full", "k2"])
@pytest.mark.parametrize("chunk", [2, 3, 64])  # 2: rows 5-6 form a chunk without any KL term
def test_fused_equals_autograd(estimator, chunk):
    g = torch.Generator().manual_seed(0)
    n, d, v, T = 11, 8, 50, 0.7
    h = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(v, d, generator=g, dtype=torch.float64)
    targets = torch.randint(0, v, (n,), generator=g)
    ws = torch.randn(n, generator=g, dtype=torch.float64)
    ws[[2, 7]] = 0.0  # KL-only rows
    ks = torch.rand(n, generator=g, dtype=torch.float64)
    ks[[0, 5, 6]] = 0.0  # loss-only rows
    w_ref = w + 0.3 * torch.randn(v, d, generator=g, dtype=torch.float64)
    h_ref = (h + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64))[ks != 0]

    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    want = _unfused(h1, w1, targets, ws, ks, h_ref, w_ref, T, estimator)
    (3.0 * want[0]).backward()

    h2, w2 = h.float().requires_grad_(), w.float().requires_grad_()
    got = fused_token_loss(h2, w2, targets, ws.float(), ks.float(), h_ref.float(), w_ref.float(), T, estimator,
                           chunk=chunk)
    (3.0 * got[0]).backward()
    for a, b in zip(got, want):
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-5, abs=1e-5)
    for g, want_g in ((h2.grad, h1.grad), (w2.grad, w1.grad)):  # fp32 against fp64: tolerance to the tensor's scale
        torch.testing.assert_close(g.double(), want_g, rtol=1e-4, atol=1e-5 * want_g.abs().max().item())
    assert got[1].requires_grad is False and got[0].requires_grad


def test_no_kl_needs_no_reference_and_frozen_weight_gets_no_grad():
    h = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(20, 4)  # frozen (e.g. LoRA's base output layer)
    t = torch.randint(0, 20, (5,))
    loss, pg, kl_sum, kl_term = fused_token_loss(h, w, t, torch.ones(5), torch.zeros(5))
    loss.backward()
    want = F.cross_entropy(h.detach() @ w.t(), t, reduction="sum")
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
    assert float(kl_sum) == 0.0 and h.grad is not None and w.grad is None
    with pytest.raises(ValueError, match="reference"):
        fused_token_loss(h, w, t, torch.ones(5), torch.ones(5))


def test_no_rows_give_zero_gradients():
    """A rank with nothing to train still runs a zero-weight forward and backward (so the all-reduce never waits for
    it): with no selected rows the loss is 0 and the output weight's gradient exactly 0, not whatever memory held."""
    torch.manual_seed(0)
    w = torch.randn(300, 8, requires_grad=True)
    for _ in range(2):  # the second call may get a recycled, non-zero allocation
        h = torch.randn(0, 8, requires_grad=True)
        loss = fused_token_loss(h, w, torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0))[0]
        (loss * 1.0).backward()
        assert float(loss) == 0.0 and w.grad is not None and bool((w.grad == 0).all())
        junk = torch.full((300, 8), 7.0)  # leave non-zero memory behind for the next allocation
        del junk



def test_right_padding_needs_no_mask_and_other_padding_keeps_it():
    from transformers import LlamaConfig, LlamaForCausalLM

    from scorebench.training.token_loss import padding_mask_or_none
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert padding_mask_or_none(right) is None
    for other in (torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]), torch.tensor([[1, 0, 1, 1, 0], [1] * 5])):
        assert padding_mask_or_none(other) is other  # left padding, holes: the mask is needed
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=100))
    ids = torch.randint(0, 100, (2, 5))
    with torch.no_grad():
        masked = model.model(input_ids=ids, attention_mask=right).last_hidden_state
        causal = model.model(input_ids=ids).last_hidden_state
    real = right.bool()
    assert torch.equal(masked[real], causal[real])  # the real positions, bit for bit


@pytest.mark.parametrize("estimator", ["full", "k2"])
def test_a_bf16_reference_layer_is_upcast_a_slice_at_a_time(monkeypatch, estimator):
    """The bf16 reference's output layer is never copied to fp32 whole (113 MB at the step's peak for a 49k
    vocabulary), and its slices give the loss and gradients of the whole copy (to fp32's last bits)."""
    import scorebench.training.token_loss as tl
    g = torch.Generator().manual_seed(1)
    n, d, v = 9, 16, 50
    h, w = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g)
    t, ws = torch.randint(0, v, (n,), generator=g), torch.randn(n, generator=g)
    ks = torch.rand(n, generator=g)
    ks[[1, 4]] = 0.0  # chunks with and without a KL term on every row
    w_ref = (w + 0.3 * torch.randn(v, d, generator=g)).bfloat16()
    h_ref = h[ks != 0] + 0.1

    def run(rows):
        monkeypatch.setattr(tl, "UPCAST_ROWS", rows)
        h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
        out = fused_token_loss(h1, w1, t, ws, ks, h_ref, w_ref, 0.7, estimator, chunk=4)
        out[0].backward()
        return [o.detach() for o in out] + [h1.grad, w1.grad]

    whole = run(v)
    upcast = []  # rows of every bf16 tensor upcast
    real_float = torch.Tensor.float

    def counted(self):
        if self.dtype == torch.bfloat16:
            upcast.append(self.shape[0])
        return real_float(self)
    monkeypatch.setattr(torch.Tensor, "float", counted)
    sliced = run(7)
    monkeypatch.setattr(torch.Tensor, "float", real_float)
    for a, b in zip(sliced, whole):  # the same dot products; a BLAS may block 7 columns unlike 50 (last bits)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * float(b.abs().max()))
    assert upcast and max(upcast) == 7 and sum(upcast) % v == 0  # 7 rows at a time, all of them per chunk with KL
