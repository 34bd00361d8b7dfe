"""The trainer's token loss at the output layer, fused and chunked:

    sum_r -w_r * log pi(y_r | prefix_r)  +  sum_r k_r * KL_r(pi || ref)

over the selected rows r (the positions that carry a loss weight or a KL coefficient), from the decoder's hidden
states ``h`` and the output layer's weight ``W`` (logits = h W^T / T, computed in fp32).

Why fused: with a 49k vocabulary, autograd keeps several (rows x vocab) fp32 tensors of a micro-batch alive
until the backward pass — logits, log-softmax, the reference's log-softmax, p, p * (log p - log q) — about 2.5 GB
at 8 sequences of 300 tokens, a third of a CPU step's peak memory, and each is another pass over memory. Here
each chunk of rows computes its logits, loss and the gradient of the loss with respect to its logits in one go
(both have closed forms), turns that into the gradients for ``h`` and ``W`` at once, and drops the chunk; the
backward pass only scales the stored gradients. The matmuls are the same three autograd would do (logits,
grad of h, grad of W); nothing is recomputed.

The closed forms, with z = logits / T, p = softmax(z), d = log p - log q, KL = sum_v p_v d_v:
    d(-log p_y)/dz = p - onehot(y)
    d KL/dz        = p * (d - KL)                    ("full": the exact KL over the vocabulary)
    d (d_y^2 / 2)/dz = d_y * (onehot(y) - p)         ("k2": half the squared log-ratio of the token)
``tests/unit/training/test_token_loss.py`` checks value and gradients against autograd on the unfused loss.
"""
from __future__ import annotations

import torch

CHUNK_ROWS = 256
"""Rows per chunk: (rows x vocab) fp32 temporaries of ~50 MB each for a 49k vocabulary. 128 rows would hold 75 MB
less, for 1.11x the loss's CPU (700 rows, one thread; ``results/signal-arith.md`` §6)."""

UPCAST_ROWS = 8192
"""Output-layer rows a low-precision weight is upcast to fp32 at a time (``_mm_fp32``)."""


class _Workspace:
    """Three (chunk x vocab) fp32 buffers every chunk of a step reuses. Why: each such tensor is ~50 MB, above
    glibc's largest mmap threshold, so a fresh one per operation is a fresh mapping whose pages fault in on first
    touch — measured, the page faults and the extra passes of out-of-place ops cost about as much as the
    output layer's own matmuls. ``release()`` hands them back (the trainer does after each step).

    Not packed for oneDNN here, unlike the engine's output layer (``scorebench.onednn``): packing the policy's and the
    reference's output layers and the transpose (three 113 MB copies a step) made the loss 1.14x faster alone but no
    measurable difference to a 16 x 4 step, and raised the step's peak by ~0.35 GB."""

    buffers: dict = {}

    @classmethod
    def get(cls, rows: int, vocab: int, device) -> list[torch.Tensor]:
        key = (str(device), vocab)
        bufs = cls.buffers.get(key)
        if bufs is None or bufs[0].shape[0] < rows:
            bufs = cls.buffers[key] = [torch.empty(rows, vocab, dtype=torch.float32, device=device)
                                       for _ in range(3)]
        return [b[:rows] for b in bufs]

    @classmethod
    def release(cls) -> None:
        cls.buffers.clear()


release_workspace = _Workspace.release


def _mm_fp32(x, w, out):
    """``out = x @ w.float().t()`` for fp32 ``x`` and ``out``: a low-precision ``w`` (the bf16 reference's output
    layer) is upcast ``UPCAST_ROWS`` of its rows at a time into ``out``'s columns.

    Why: upcast whole, the reference's (vocab x hidden) weight is a 113 MB fp32 copy at every micro-batch's loss,
    when the decoder's activations are all alive (the step's peak); sliced, the loss also takes 0.95x the CPU (700
    rows, one thread: the slices stay in cache). Each output is the same dot product over the hidden size either
    way: a 3-step SCoRe run trained bit for bit as before (losses, gradient norms, rollouts; MKL on a 2-core Xeon);
    where a BLAS blocks a narrow slice otherwise, fp32's last bits move (tested)."""
    if w.dtype == torch.float32:
        return torch.mm(x, w.t(), out=out)
    for v in range(0, w.shape[0], UPCAST_ROWS):
        torch.mm(x, w[v:v + UPCAST_ROWS].float().t(), out=out[:, v:v + UPCAST_ROWS])
    return out


def _log_softmax_into(z, out):
    return torch.ops.aten._log_softmax.out(z, -1, False, out=out)


class _FusedTokenLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, w, targets, ws, ks, h_ref, w_ref, temperature, estimator, chunk):
        with torch.autocast(device_type=h.device.type, enabled=False):  # fp32 at the output layer, always
            return _FusedTokenLoss._forward(ctx, h, w, targets, ws, ks, h_ref, w_ref, temperature, estimator, chunk)

    @staticmethod
    def _forward(ctx, h, w, targets, ws, ks, h_ref, w_ref, temperature, estimator, chunk):
        """Per chunk, with A, B, C the workspace's buffers and every (rows x vocab) step in place:
        C = log q (reference), B = log p, A = p; then dz = p * a + onehot(y) * b with a = w + k (d - KL),
        b = -w ("full") or a = w - k d_y, b = k d_y - w ("k2"), built in C."""
        need_h = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1]
        n = h.shape[0]
        inv_t = 1.0 / temperature
        sel = ks != 0
        ref_row = torch.cumsum(sel.long(), 0) - 1  # row of h_ref for each selected row
        grad_h = torch.zeros(h.shape, dtype=torch.float32, device=h.device) if need_h else None
        grad_w = None if not need_w else (torch.empty if n else torch.zeros)(w.shape, dtype=torch.float32,
                                                                          device=w.device)  # no rows: no chunk writes it
        pg = torch.zeros((), dtype=torch.float64, device=h.device)
        kl_term = torch.zeros((), dtype=torch.float64, device=h.device)
        kl_sum = torch.zeros((), dtype=torch.float64, device=h.device)
        wt = w.float().t()
        bufs = _Workspace.get(min(n, chunk), w.shape[0], h.device)
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            m = j - i
            A, B, C = (b[:m] for b in bufs)
            hc = h[i:j].float()
            t, wc, s = targets[i:j], ws[i:j], sel[i:j]
            any_kl = bool(s.any())
            rows = (slice(None) if bool(s.all()) else s.nonzero(as_tuple=True)[0]) if any_kl else None
            if any_kl:  # C = log q at the rows with a KL term
                hr = h_ref[ref_row[i:j][rows]].float() * inv_t
                if isinstance(rows, slice):
                    _log_softmax_into(_mm_fp32(hr, w_ref, A), C)
                else:
                    C.zero_()
                    C[rows] = torch.log_softmax(_mm_fp32(hr, w_ref, A[:hr.shape[0]]), -1)
            torch.mm(hc * inv_t, wt, out=A)  # z / T
            _log_softmax_into(A, B)  # log p
            logp_t = B.gather(-1, t[:, None]).squeeze(-1)
            pg -= (wc.double() * logp_t.double()).sum()
            torch.exp(B, out=A)  # p
            k = ks[i:j]
            if not any_kl:
                C.copy_(wc[:, None].expand(m, C.shape[1]))
                b = -wc
            elif estimator == "full":
                torch.sub(B, C, out=C)  # d = log p - log q (0 - 0 where no KL term: those rows get k = 0)
                if not isinstance(rows, slice):
                    C[~s] = 0
                kl = torch.bmm(A[:, None, :], C[:, :, None]).view(m)  # sum_v p_v d_v, no temporary
                kl_term += (k.double() * kl.double()).sum()
                kl_sum += kl[rows].double().sum()
                C.sub_(kl[:, None]).mul_(k[:, None]).add_(wc[:, None])  # a = w + k (d - KL)
                b = -wc
            else:  # k2: half the squared log-ratio of the drawn token
                d_t = logp_t - C.gather(-1, t[:, None]).squeeze(-1)
                kl = 0.5 * d_t ** 2 * s
                kl_term += (k.double() * kl.double()).sum()
                kl_sum += kl[rows].double().sum()
                g = k * d_t
                C.copy_((wc - g)[:, None].expand(m, C.shape[1]))
                b = g - wc
            C.mul_(A)  # dz / (1/T): p * a
            C.scatter_add_(-1, t[:, None], b[:, None])  # + onehot(y) * b
            if need_h:
                torch.mm(C, w.float(), out=grad_h[i:j]).mul_(inv_t)
            if need_w:
                grad_w.addmm_(C.t(), hc, beta=0 if i == 0 else 1, alpha=inv_t)
            del hc
        ctx.grads = [grad_h, grad_w]
        ctx.h_dtype, ctx.w_dtype = h.dtype, w.dtype
        outs = ((pg + kl_term).float(), pg.float(), kl_sum.float(), kl_term.float())
        ctx.mark_non_differentiable(*outs[1:])
        return outs

    @staticmethod
    def backward(ctx, g_loss, _g_pg, _g_kl_sum, _g_kl_term):
        grad_h, grad_w = ctx.grads
        ctx.grads = None  # scaled in place and handed on: no second (vocab x hidden) tensor
        gh = grad_h.mul_(g_loss).to(ctx.h_dtype) if grad_h is not None else None
        gw = grad_w.mul_(g_loss).to(ctx.w_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None, None, None, None


def fused_token_loss(h, w, targets, ws, ks, h_ref=None, w_ref=None, temperature: float = 1.0,
                     estimator: str = "full", chunk: int = CHUNK_ROWS):
    """(loss, pg, kl_sum, kl_term): loss = pg + kl_term, differentiable in ``h`` and ``w``; pg = -sum w log p;
    kl_term = sum k KL; kl_sum = sum KL over rows with k != 0 (for the log). ``h``: (rows, hidden) hidden
    states at the selected positions; ``w``: (vocab, hidden) output weight; ``h_ref``: the reference's hidden
    states at the rows with k != 0, in order; ``w_ref``: the reference's output weight."""
    if bool((ks != 0).any()) and h_ref is None:
        raise ValueError("a KL term needs the reference's hidden states")
    if h_ref is None:
        h_ref, w_ref = h.new_zeros((0, h.shape[1])), w
    return _FusedTokenLoss.apply(h, w, targets, ws.float(), ks.float(), h_ref, w_ref, float(temperature),
                                 estimator, int(chunk))


def padding_mask_or_none(mask):
    """None where ``mask`` is right padding (each row: ones, then zeros), else ``mask``.

    Why: under causal attention a position never sees a later one, so right padding is invisible to every real
    position without any mask — the padding mask changes only the outputs at pad positions, which carry no loss
    (and so no gradient); the results are the same bit for bit (tested). Passed a padding mask, the model
    materialises a (batch, 1, length, length) mask and attention computes every block of it; without one it
    runs as ``is_causal`` and skips the blocks above the diagonal. Measured on CPU flash attention (bf16, one
    thread, 4 x 9 heads, forward + backward): 1,024 tokens 347 ms instead of 445; at 240 tokens, a SCoRe
    sequence here, one block holds them all and the step's time did not change."""
    if mask is None:
        return None
    n = mask.sum(-1, keepdim=True)
    right = torch.arange(mask.shape[-1], device=mask.device)[None, :] < n
    return None if bool((right == mask.bool()).all()) else mask


def past_attention_mask(mask, past_width: int, decoder):
    """The 4-D additive mask (rows, 1, length, past_width + length) of right-padded rows that continue a past,
    in the dtype attention computes in, for a decoder on SDPA attention; else ``mask`` (2-D) as it is.

    Why: passed the 2-D mask, transformers builds one boolean mask and every layer's SDPA converts it to an
    additive one of the query's dtype and keeps that copy for backward (measured on a SCoRe micro-batch of 4 x
    299 tokens after a 58-token past: 30 copies, 26 MB). Built here once, all layers share it. The same mask:
    row r's position i sees position j of the past and itself when j <= past_width + i (causal, in the cache's
    positions) and ``mask[r, j]`` is 1; 0 where it sees, -inf where not, as SDPA's conversion writes it
    (``tests/unit/training/test_shared_prompts.py``: outputs and gradients bit for bit)."""
    if getattr(getattr(decoder, "config", None), "_attn_implementation", None) != "sdpa":
        return mask
    dev = mask.device.type
    autocast = torch.is_autocast_enabled(dev)
    dtype = torch.get_autocast_dtype(dev) if autocast else decoder.get_input_embeddings().weight.dtype
    length = mask.shape[1] - past_width
    causal = (torch.arange(mask.shape[1], device=mask.device)[None, :]
              <= past_width + torch.arange(length, device=mask.device)[:, None])
    sees = causal[None, None] & mask.bool()[:, None, None, :]
    return torch.zeros(sees.shape, dtype=dtype, device=mask.device).masked_fill_(~sees, float("-inf"))


class SelectedLogits(torch.nn.Module):
    """The policy as the loss calls it: logits at the (row, col) positions that carry a loss or a KL term only.

    Why a module of its own: accelerate wraps what it prepares (DDP across processes, FSDP for big models), and
    those wrappers sync gradients only for backward passes through *their* forward — so the forward the loss runs
    must be the wrapped module's, selection included. Why only those positions: the 49k-vocabulary projection
    and log-softmax cost as much as the rest of a small model's forward, and prompt positions carry neither loss
    nor KL. The decoder's hidden states are taken whole (attention needs every position), then only the selected
    rows go through the output layer."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def split(self):
        """(decoder, output layer) when the model has that split and no logit soft-capping, else None."""
        model = self.model
        decoder = getattr(model, "get_decoder", lambda: None)()
        head = getattr(model, "get_output_embeddings", lambda: None)()
        capped = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
        return (decoder, head) if decoder is not None and head is not None and not capped else None

    def fusable(self) -> bool:
        """Whether the fused output-layer loss (``token_loss``) applies: a plain bias-free linear output layer
        (not one wrapped by an adapter)."""
        split = self.split()
        return split is not None and type(split[1]) is torch.nn.Linear and split[1].bias is None

    def can_share_prompts(self) -> bool:
        """Whether a past of shared prompts (``prompts.py``) can be passed: the decoder split, no gradient
        checkpointing (transformers drops a past under it), and full attention in every layer."""
        split = self.split()
        if split is None or getattr(self.model, "is_gradient_checkpointing", False):
            return False
        from transformers.cache_utils import DynamicCache, DynamicLayer
        try:
            layers = DynamicCache(config=split[0].config).layers
        except Exception:  # noqa: BLE001 - a model whose cache transformers cannot build from its config
            return False
        return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)

    def prompt_kv(self, ids, mask) -> list[tuple]:
        """Per decoder layer, the (keys, values) of right-padded prompts ``ids``, as attention stores them."""
        decoder = self.split()[0]
        cache = decoder(input_ids=ids, attention_mask=padding_mask_or_none(mask), use_cache=True).past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def forward(self, ids, mask, rows, cols, hidden: bool = False, loss=None, past=None):
        """fp32 logits at (rows, cols); ``hidden``: the decoder's hidden states there instead; ``loss(h, W)``: that
        function of the hidden states and the output weight (the fused loss, which needs ``fusable()``).
        ``past``: a ``prompts.Past`` the rows continue (positions from ``past.start``; needs the split)."""
        split = self.split()
        if split is None:  # a model without the split (or with logit soft-capping): full logits, then select
            return self.model(input_ids=ids, attention_mask=padding_mask_or_none(mask),
                              use_cache=False).logits[rows, cols]
        decoder, head = split
        if past is None:
            out = decoder(input_ids=ids, attention_mask=padding_mask_or_none(mask), use_cache=False)
        else:
            from transformers.cache_utils import DynamicCache
            pos = past.start[:, None] + torch.arange(ids.shape[1], device=ids.device)[None, :]
            full = past_attention_mask(torch.cat([past.mask, mask], 1), past.mask.shape[1], decoder)
            out = decoder(input_ids=ids, attention_mask=full, position_ids=pos,
                          past_key_values=DynamicCache(ddp_cache_data=past.kv), use_cache=True)
        h = out.last_hidden_state[rows, cols]
        if hidden:
            return h
        if loss is not None:
            return loss(h, head.weight)
        # the output layer in fp32 even under bf16 autocast: bf16 logits are rounded to ~0.06 nats, and the
        # engine computes the rollouts' logits in fp32 too (one precision for sampler and loss)
        with torch.autocast(device_type=h.device.type, enabled=False):
            return head(h.float())
