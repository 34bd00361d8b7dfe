"""oneDNN's linear on a weight reordered once into its blocked layout ("packed"), for CPU matmuls whose weight is
fixed across many calls. Why: PyTorch's default CPU matmul re-packs the weight on every call; measured on a 2-core
AMD EPYC, one thread, fp32, the embedded model's output layer (576 → 49,152): 256 rows 0.16 s against 0.25 s, 32 rows
(a decode step) 0.022 s against 0.038 s. Same arithmetic up to the order of summation (fp32 results ~1e-6
apart). ``packable`` says where it applies; elsewhere (a GPU, a build without oneDNN) callers use ``F.linear``."""
from __future__ import annotations

import functools

import torch


def bf16_native() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 bf16 / AMX), where bf16 decoding pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - old torch
        return False


@functools.lru_cache(maxsize=None)
def _works(dtype: torch.dtype) -> bool:
    """One tiny packed matmul in ``dtype`` that must equal F.linear's: a build or CPU without it falls back."""
    try:
        g = torch.Generator().manual_seed(0)  # not the global generator: asking must not move anyone's seed
        w = torch.randn(8, 4, generator=g).to(dtype)
        x = torch.randn(3, 4, generator=g).to(dtype)
        got = linear(x, torch.ops.mkldnn._reorder_linear_weight(w, 32))
        return bool(torch.allclose(got.float(), torch.nn.functional.linear(x, w).float(), atol=1e-2))
    except Exception:
        return False


def usable(dtype: torch.dtype, device) -> bool:
    """Whether weights of ``dtype`` on ``device`` can be packed here: the CPU, fp32, or bf16 where the CPU has
    native bf16 (elsewhere oneDNN's bf16 is emulated and slower than fp32)."""
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    if dtype == torch.bfloat16 and not bf16_native():
        return False
    return _works(dtype)


def packable(w: torch.Tensor) -> bool:
    """Whether the weight ``w`` can be packed here (``usable`` for its dtype and device)."""
    return usable(w.dtype, w.device)


def pack(w: torch.Tensor) -> torch.Tensor:
    """``w`` (out × in) reordered for ``linear``; a snapshot: later changes to ``w`` are not seen."""
    return torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), 32)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W^T (+ bias) for a ``pack``-ed W."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
