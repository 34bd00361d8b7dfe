"""The policy's RMSNorms and SwiGLU MLPs with lean backward state: the same outputs and gradients, fewer saved
activations.

Why: a micro-batch's saved activations set the trainer step's peak memory. Composed of small ops, a Llama-style
RMSNorm keeps two fp32 copies of its input's size for backward (the input and the normalised input) and the
SwiGLU product keeps three (gate, up and silu(gate)). Here each is one autograd function that keeps what its
backward cannot cheaply recompute (the input and the per-row 1/rms; gate and up) and recomputes the rest:
one fp32 and one bf16 tensor of the hidden / intermediate width fewer per layer and token. Outputs are the same
bit for bit (the forward runs the module's own ops); SwiGLU's gradients too (its backward runs autograd's); the
RMSNorm's backward is one closed form, equal to autograd's up to fp32 summation order.

``make_lean`` replaces ``forward`` on a model's modules that pass a check: a norm only where its own forward and
the lean one agree bit for bit on a probe (so a norm of another formula, e.g. Gemma's 1 + w, stays as it is); an
MLP only where its forward is down(silu(gate(x)) * up(x)) on a probe.
"""
from __future__ import annotations

import types

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
        gate, up = ctx.saved_tensors
        d_up = d * F.silu(gate) if ctx.needs_input_grad[1] else None
        d_gate = torch.ops.aten.silu_backward(d * up, gate) if ctx.needs_input_grad[0] else None
        return d_gate, d_up


def _norm_forward(self, x):
    if x.dtype != torch.float32 or self.weight.dtype != torch.float32 or not torch.is_grad_enabled():
        return self._own_forward(x)
    return _RMSNorm.apply(x, self.weight, self.variance_epsilon)


def _mlp_forward(self, x):
    if not torch.is_grad_enabled():
        return self._own_forward(x)
    return self.down_proj(_SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


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
    """Give ``model``'s RMSNorms and SwiGLU MLPs the lean forward; returns how many modules changed."""
    n = 0
    for mod in model.modules():
        if getattr(mod, "_own_forward", None) is not None:
            continue
        if type(mod).__name__.endswith("RMSNorm") and _norm_agrees(mod):
            mod._own_forward, mod.forward = mod.forward, types.MethodType(_norm_forward, mod)
            n += 1
        elif all(hasattr(mod, k) for k in ("gate_proj", "up_proj", "down_proj", "act_fn")) and _mlp_agrees(mod):
            mod._own_forward, mod.forward = mod.forward, types.MethodType(_mlp_forward, mod)
            n += 1
    return n
