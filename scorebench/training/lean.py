"""The policy's RMSNorms, SwiGLU MLPs and linear layers with lean backward state: the same outputs and gradients,
fewer saved activations.

Why: a micro-batch's saved activations set the trainer step's peak memory. Composed of small ops, a Llama-style
RMSNorm keeps two fp32 copies of its input's size for backward (the input and the normalised input) and the
SwiGLU product keeps three (gate, up and silu(gate)). Here each is one autograd function that keeps what its
backward cannot cheaply recompute (the input and the per-row 1/rms; gate and up) and recomputes the rest:
one fp32 and one bf16 tensor of the hidden / intermediate width fewer per layer and token. Outputs are the same
bit for bit (the forward runs the module's own ops); SwiGLU's gradients too (its backward runs autograd's); the
RMSNorm's backward is one closed form, equal to autograd's up to fp32 summation order.

Under bf16 autocast a linear layer keeps two casts for backward: its fp32 weight's bf16 copy (autocast makes one
per forward and the matmul saves it) and its input's (one per layer: q, k and v each cast the same fp32 input,
and so do gate and up). A 4 x 299-token micro-batch of the embedded model saved 0.21 GB of weight copies and
0.12 GB of repeated input casts. ``_CastLinear`` computes what autocast computes — F.linear on the bf16 casts —
keeps the input's cast, shared by the projections that read the same input, and casts the weight again in
backward: outputs and gradients bit for bit the same (test), at one more weight cast per layer in backward.

``make_lean`` replaces ``forward`` on a model's modules that pass a check: a norm only where its own forward and
the lean one agree bit for bit on a probe (so a norm of another formula, e.g. Gemma's 1 + w, stays as it is); an
MLP only where its forward is down(silu(gate(x)) * up(x)) on a probe; every ``nn.Linear`` but the output layer
(which the trainer computes in fp32), the lean path taken only under bf16 / fp16 autocast with grad enabled.
"""
from __future__ import annotations

import types
import weakref

import torch
import torch.nn.functional as F


class _RMSNorm(torch.autograd.Function):
    """w * (x * rsqrt(mean(x^2) + eps)) for fp32 x and w; keeps x, w and the per-row rsqrt."""

    @staticmethod
    def forward(ctx, x, w, eps):
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, w, r)
        return w * (x * r)

    @staticmethod
    def backward(ctx, g):
        x, w, r = ctx.saved_tensors
        n = x * r
        gw = (g * n).reshape(-1, n.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        gn = g * w
        # d/dx of n = x r with r = (mean(x^2) + eps)^-1/2: r * (gn - n * mean(gn * n))
        gx = r * (gn - n * (gn * n).mean(-1, keepdim=True)) if ctx.needs_input_grad[0] else None
        return gx, gw, None


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up; keeps gate and up, recomputes silu(gate) in backward (autograd's own ops there)."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, d):
        return _swiglu_grads(d, *ctx.saved_tensors, *ctx.needs_input_grad)


def _swiglu_grads(d, gate, up, need_gate: bool, need_up: bool):
    """(d gate, d up) of silu(gate) * up for its gradient ``d``, by autograd's own ops."""
    d_up = d * F.silu(gate) if need_up else None
    d_gate = torch.ops.aten.silu_backward(d * up, gate) if need_gate else None
    return d_gate, d_up


def _linear_grads(g, xc, w, need_x: bool, need_w: bool):
    """(d xc in g's dtype, d w in w's dtype) of F.linear(xc, w.to(g.dtype)) for its gradient ``g``: the matmuls
    autograd's mm backward runs, in the same layouts, so the same bits as autocast's linear."""
    g2 = g.reshape(-1, g.shape[-1])
    gx = g2.mm(w.to(g.dtype)).view(*g.shape[:-1], w.shape[1]) if need_x else None
    gw = g2.t().mm(xc.reshape(-1, xc.shape[-1])).to(w.dtype) if need_w else None
    return gx, gw


def _cast_dtype(device_type: str, w: torch.Tensor):
    """The autocast dtype where the lean cast path applies to a layer with fp32 weight ``w`` (grad enabled,
    autocast on), else None."""
    if not torch.is_grad_enabled() or not torch.is_autocast_enabled(device_type) or w.dtype != torch.float32:
        return None
    return torch.get_autocast_dtype(device_type)


class _CastLinear(torch.autograd.Function):
    """F.linear(x.to(dt), w.to(dt), b.to(dt)) for the autocast dtype dt; keeps ``xc`` (x's cast, given) and the
    fp32 weight itself, not its cast (``_linear_grads`` casts it again); the weight's and bias's gradients come
    back in their own dtype (fp32), as autocast's cast returns them, and x's in x's."""

    @staticmethod
    def forward(ctx, x, xc, w, b):
        with torch.autocast(x.device.type, enabled=False):
            y = F.linear(xc, w.to(xc.dtype), None if b is None else b.to(xc.dtype))
        ctx.save_for_backward(xc, w)
        ctx.x_dtype, ctx.b_dtype = x.dtype, None if b is None else b.dtype
        return y

    @staticmethod
    def backward(ctx, g):
        xc, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gw = _linear_grads(g, xc, w, need[0], need[2])
        gb = g.reshape(-1, g.shape[-1]).sum(0).to(ctx.b_dtype) if need[3] else None
        return None if gx is None else gx.to(ctx.x_dtype), None, gw, gb


_last_cast: list = [None]
"""(x, x's version, dtype, x's cast) of the last input cast, held by weak references: q, k and v (gate and up)
read one input one after another, and share its cast."""


def _cast_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x's cast to ``dtype``, without gradient, made once for consecutive calls on the same unchanged ``x``."""
    if x.dtype == dtype:
        return x.detach()
    c = _last_cast[0]
    if c is not None and c[0]() is x and c[1] == x._version and c[2] == dtype:
        xc = c[3]()
        if xc is not None:
            return xc
    with torch.no_grad():
        xc = x.to(dtype)
    _last_cast[0] = (weakref.ref(x), x._version, dtype, weakref.ref(xc))
    return xc


def _linear_forward(self, x):
    dt = _cast_dtype(x.device.type, self.weight)
    if dt is None or x.dtype not in (torch.float32, dt):
        return self._own_forward(x)
    return _CastLinear.apply(x, _cast_once(x, dt), self.weight, self.bias)


def _norm_forward(self, x):
    if x.dtype != torch.float32 or self.weight.dtype != torch.float32 or not torch.is_grad_enabled():
        return self._own_forward(x)
    return _RMSNorm.apply(x, self.weight, self.variance_epsilon)


class _SwiGLUDown(torch.autograd.Function):
    """down(silu(gate) * up) under autocast, down's weight fp32 (``_CastLinear``'s rule); keeps gate and up only:
    backward makes silu(gate) * up again (the ops of the forward, so the same bits) instead of keeping down's
    input, one (tokens x intermediate) bf16 tensor per layer."""

    @staticmethod
    def forward(ctx, gate, up, w):
        h = F.silu(gate) * up
        with torch.autocast(gate.device.type, enabled=False):
            y = F.linear(h, w.to(h.dtype))
        ctx.save_for_backward(gate, up, w)
        return y

    @staticmethod
    def backward(ctx, g):
        gate, up, w = ctx.saved_tensors
        need_gate, need_up, need_w = ctx.needs_input_grad
        h = F.silu(gate) * up if need_w else None
        d, gw = _linear_grads(g, h, w, need_gate or need_up, need_w)
        return (*_swiglu_grads(d, gate, up, need_gate, need_up), gw) if d is not None else (None, None, gw)


def _mlp_forward(self, x):
    if not torch.is_grad_enabled():
        return self._own_forward(x)
    gate, up = self.gate_proj(x), self.up_proj(x)
    down = self.down_proj
    if (type(down) is torch.nn.Linear and down.bias is None
            and gate.dtype == up.dtype == _cast_dtype(x.device.type, down.weight)):
        return _SwiGLUDown.apply(gate, up, down.weight)
    return down(_SwiGLU.apply(gate, up))


def _norm_agrees(mod) -> bool:
    """The module's forward and the lean one give the same bits on a probe input (fp32, no autocast)."""
    w = mod.weight
    if not isinstance(getattr(mod, "variance_epsilon", None), float) or w.dtype != torch.float32 or w.dim() != 1:
        return False
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(3, w.shape[0], generator=g) * 3).to(w.device)
    with torch.no_grad(), torch.autocast(w.device.type, enabled=False):
        return torch.equal(mod.forward(x), _RMSNorm.apply(x, w, mod.variance_epsilon))


def _mlp_agrees(mod) -> bool:
    """The module's forward and the lean one give the same bits on a probe input (its own precision)."""
    w = mod.gate_proj.weight
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, w.shape[-1], generator=g).to(w.device, w.dtype)
    with torch.no_grad():
        return torch.equal(mod.forward(x), mod.down_proj(F.silu(mod.gate_proj(x)) * mod.up_proj(x)))


def make_lean(model) -> int:
    """Give ``model``'s RMSNorms, SwiGLU MLPs and linear layers the lean forward; returns how many modules changed."""
    n = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for mod in model.modules():
        if getattr(mod, "_own_forward", None) is not None:
            continue
        if type(mod) is torch.nn.Linear and mod is not head:
            mod._own_forward, mod.forward = mod.forward, types.MethodType(_linear_forward, mod)
            n += 1
            continue
        if type(mod).__name__.endswith("RMSNorm") and _norm_agrees(mod):
            mod._own_forward, mod.forward = mod.forward, types.MethodType(_norm_forward, mod)
            n += 1
        elif all(hasattr(mod, k) for k in ("gate_proj", "up_proj", "down_proj", "act_fn")) and _mlp_agrees(mod):
            mod._own_forward, mod.forward = mod.forward, types.MethodType(_mlp_forward, mod)
            n += 1
    return n
