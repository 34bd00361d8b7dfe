"""The fast engine's weights: a snapshot of a Llama-family model's weights in the compute dtype.

QKV and gate/up projections are fused into one matrix each, peft LoRA deltas are merged in, and on a CPU (fp32, or
bf16 where the CPU has it natively) the matmul weights are reordered once into oneDNN's blocked layout (``pack``),
so no matmul re-packs its weight per call. The residual stream's norms and the output layer stay fp32.
"""
from __future__ import annotations

import torch

from ... import onednn
from ...onednn import bf16_native  # noqa: F401  (where the engine's callers import it from)


def base_model(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    if hasattr(model, "get_base_model"):
        try:
            return model.get_base_model()
        except Exception:
            pass
    return model


def weight(mod) -> torch.Tensor:
    """A layer's effective weight: the plain weight, or for a peft LoRA layer base + active adapter deltas."""
    if hasattr(mod, "base_layer"):
        w = weight(mod.base_layer)
        if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
            for name in getattr(mod, "active_adapters", []) or []:
                if name in getattr(mod, "lora_A", {}) or name in getattr(mod, "lora_embedding_A", {}):
                    w = w + mod.get_delta_weight(name).to(w.dtype)
        return w
    return mod.weight


def bias(mod):
    while hasattr(mod, "base_layer"):
        mod = mod.base_layer
    return getattr(mod, "bias", None)


def snapshot(model, dtype: torch.dtype, packed: bool) -> tuple:
    """(layers, final norm, embedding, output layer) of a Llama-family ``model`` (peft LoRA deltas merged):
    per layer (input norm, fused QKV, its bias or None, output projection, its bias, post-attention norm, fused
    gate/up, down projection), matmul weights in ``dtype`` (reordered for oneDNN when ``packed``), norms fp32."""
    m = base_model(model)
    dt = dtype
    layers = []
    for layer in m.model.layers:
        a, f = layer.self_attn, layer.mlp
        qkv = torch.cat([weight(a.q_proj), weight(a.k_proj), weight(a.v_proj)], 0).to(dt).contiguous()
        bs = [bias(a.q_proj), bias(a.k_proj), bias(a.v_proj)]
        qkv_b = torch.cat(bs).to(dt) if all(b is not None for b in bs) else None
        gu = torch.cat([weight(f.gate_proj), weight(f.up_proj)], 0).to(dt).contiguous()
        layers.append((layer.input_layernorm.weight.detach().float(), qkv, qkv_b,
                       weight(a.o_proj).to(dt).contiguous(), bias(a.o_proj),
                       layer.post_attention_layernorm.weight.detach().float(), gu,
                       weight(f.down_proj).to(dt).contiguous()))
    norm = m.model.norm.weight.detach().float()
    embed = weight(m.get_input_embeddings()).detach()
    # The output layer stays fp32 whatever the compute dtype: bf16 logits are rounded to ~0.06 nats, more than
    # any other step loses, and the trainer's loss computes them in fp32 too (one precision for both sides).
    lm_head = weight(m.get_output_embeddings()).float().contiguous()
    if packed:  # indices 1, 3, 6, 7 of a layer tuple are its matmul weights
        layers = [tuple(pack(w) if j in (1, 3, 6, 7) else w for j, w in enumerate(lw)) for lw in layers]
    return layers, norm, embed, lm_head


def copy_into(old, new) -> bool:
    """Copy every tensor of the nested tuples/lists ``new`` into its counterpart in ``old`` in place; False
    (nothing copied) when the two differ in structure, shape, dtype or device."""
    pairs = []

    def walk(a, b) -> bool:
        if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
            return len(a) == len(b) and all(walk(x, y) for x, y in zip(a, b))
        if a is None or b is None:
            return a is None and b is None
        if (a.shape, a.dtype, a.device) != (b.shape, b.dtype, b.device):
            return False
        pairs.append((a, b))
        return True

    if not walk(old, new):
        return False
    for a, b in pairs:
        if a.data_ptr() != b.data_ptr():
            a.copy_(b)
    return True


def can_pack(dtype: torch.dtype, device) -> bool:
    """Whether oneDNN weight prepacking applies (``scorebench.onednn.usable``): fp32 on a CPU, bf16 on a CPU with
    native bf16. fp32 packed: validation-shaped greedy rollouts (64 problems, two turns) 1.3x less CPU on a 2-core
    EPYC, every episode identical (summation order differs from MKL's by ~1e-6, below what moves a greedy token
    there)."""
    return onednn.usable(dtype, device)


pack = onednn.pack

