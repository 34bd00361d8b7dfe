"""Where a run computes: ``--device {auto,cpu,cuda}``, resolved once, recorded as what it really was.

Why one place: the engine, the trainer and the reference model must sit on the same device (a GPU run once sampled
on the CPU while accelerate trained on the GPU), and ``config.json`` must say where the weights were, not what was
asked for.
"""
from __future__ import annotations

from . import dist

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that cannot be had here; one line for the CLI."""


def resolve(name: str | None) -> str:
    """"cpu" or "cuda" for ``name`` ("auto": CUDA when available); in a multi-process run on GPUs, this process's
    own GPU ("cuda:LOCAL_RANK"), so the engine, the trainer and the reference of each rank share one device."""
    import torch
    name = name or "auto"
    if name not in DEVICES:
        raise DeviceError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    if name == "cuda" and dist.world() > 1:
        return f"cuda:{dist.local_rank()}"
    return name


GPU_BATCH = 256
"""Default conversations per engine batch on CUDA: a decode step of a small model costs about the same for 8 rows
as for 256 there (it is bound by launches and weight reads, not arithmetic), so a GPU wants its slots full."""
CPU_BATCH = 32


def default_batch_size(name: str | None, given: int | None = None) -> int:
    """``--batch-size`` for ``--device name``: ``given`` when the user gave one, else 256 on CUDA and 32 elsewhere
    (what CPU runs always used, so their recorded configs, and the keys that find them, are unchanged)."""
    if given is not None:
        return given
    return GPU_BATCH if resolve(name).startswith("cuda") else CPU_BATCH


def describe(model) -> dict:
    """Where ``model``'s weights are, and the GPU's name when they are on one."""
    import torch
    dev = next(model.parameters()).device
    out = {"device": str(dev)}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def _libc():
    """glibc through ctypes, loaded once; False where there is none (musl, macOS) or it lacks ``malloc_trim``."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 (absent outside glibc)
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``); False where there is no glibc.

    Why: a CPU RL step alternates two phases of different shapes (rollouts, then the trainer step), and glibc keeps
    what one phase freed on its heap, so the resident size between steps and at the next phase's peak includes the
    last phase's garbage. Measured on a 16 x 4 SCoRe step (``scripts/step_memory.py --trim``): 0.27 GB off the
    trainer step's peak, milliseconds per call. The RL loop calls it after the rollouts and after each step."""
    libc = _libc()
    if not libc:
        return False
    libc.malloc_trim(0)
    return True


def can_drop_pages() -> bool:
    """Whether ``drop_pages`` works here (glibc's libc loaded)."""
    return bool(_libc())


def drop_pages(t) -> bool:
    """Hand the whole pages inside CPU tensor ``t``'s bytes back to the OS (``madvise(MADV_DONTNEED)``): until
    written again they read as zeros, and they no longer count in the resident size. The partial pages at either end
    keep their bytes. The caller must write every byte back before anything reads ``t`` (``memory.paged_out``).
    False (nothing done) where there is no glibc, or for a tensor not on the CPU."""
    libc = _libc()
    if not libc or t.device.type != "cpu":
        return False
    import ctypes
    import os
    page = os.sysconf("SC_PAGE_SIZE")
    addr = t.data_ptr()
    start = -(-addr // page) * page
    end = (addr + t.numel() * t.element_size()) // page * page
    if end <= start:
        return True
    return libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 4) == 0  # 4: MADV_DONTNEED


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold (``M_MMAP_THRESHOLD``, as ``MALLOC_MMAP_THRESHOLD_=nbytes`` does at start):
    allocations above it are mapped and unmapped on free instead of fragmenting the heap, and the threshold no
    longer rises by itself (up to 32 MB) after the first large free. Only for requests the heap's free chunks cannot
    serve: call it early (``step_memory.py`` does it before loading anything). False where there is no glibc."""
    libc = _libc()
    return bool(libc) and bool(libc.mallopt(-3, int(nbytes)))  # -3: M_MMAP_THRESHOLD


_LIBC = None
