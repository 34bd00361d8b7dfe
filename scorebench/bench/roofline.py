"""``scorebench bench``'s ceilings and roofline: large-matmul FLOP/s, memory bandwidth (a large copy), and the
decode tokens/s bound they imply for a model: a step reads every weight once (and each row its KV cache) and costs
2 x params FLOPs per token."""
from __future__ import annotations

import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    if device.startswith("cuda"):
        n = max(n, 8192)  # a GPU needs a bigger product to reach its ceiling
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def copy_bandwidth(mbytes: int = 512, reps: int = 5, device: str = "cpu") -> float:
    """Bytes moved per second (read + write) by a large tensor copy."""
    src = torch.ones(mbytes * 2 ** 20 // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def roofline(params: int, weight_bytes: int, batch: int, bandwidth: float, flops: float,
             kv_bytes: float = 0.0) -> float:
    """Decode tokens/s bound at ``batch`` rows: one weight read per step, 2 x params FLOPs per token. ``kv_bytes``
    = KV-cache bytes each row reads per step (attention over its context); 0 = the weights-only roofline."""
    return min(batch * bandwidth / (weight_bytes + batch * kv_bytes), flops / (2 * params))
