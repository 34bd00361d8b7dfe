"""Where a training step's long-lived tensors live: the gradients and the optimizer's moments in one block each.

Why: on a CPU, glibc serves every allocation below its mmap threshold (which rises by itself to 32 MB) from one
heap. Created one tensor per parameter, the gradients (in the first micro-batch's backward) and AdamW's moments (in
the first optimizer step) landed in the holes the activations had left, so the next micro-batch's activations no
longer fitted there and the heap grew by their size; it never shrinks below a live tensor. One block per (dtype,
device) is far above the threshold, so it is mapped on its own, away from the activations, and handed back to the
OS whole when freed. The values are the same: the gradients start at zero and autograd adds into them in place,
and the moments start as the zeros AdamW would create (or as copies of a checkpoint's).
``scripts/step_memory.py`` measures the effect (``results/signal-arith.md`` §6)."""
from __future__ import annotations

import contextlib
import tempfile
import warnings

import torch

from ..device import can_drop_pages, drop_pages, trim_heap
from ..machine import rss_gb


def _blocks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """One zeroed block per (dtype, device) for ``tensors``, and each tensor's view of it (same shape), in order."""
    sizes: dict[tuple, int] = {}
    for t in tensors:
        key = (t.dtype, t.device)
        sizes[key] = sizes.get(key, 0) + t.numel()
    blocks = {key: torch.zeros(n, dtype=key[0], device=key[1]) for key, n in sizes.items()}
    offset = dict.fromkeys(sizes, 0)
    views = []
    for t in tensors:
        key = (t.dtype, t.device)
        views.append(blocks[key][offset[key]:offset[key] + t.numel()].view(t.shape))
        offset[key] += t.numel()
    return views


def flat_grads(params: list[torch.Tensor]) -> None:
    """Give every parameter in ``params`` that has no gradient a zero one, a view of one block per (dtype,
    device); backward then adds into it in place. Single process only: distributed wrappers keep their own
    gradient buckets. Call ``untouched_to_none`` before the optimizer step."""
    need = [p for p in params if p.grad is None]
    for p, g in zip(need, _blocks(need)):
        p.grad = g
        if not getattr(p, "_grad_seen_hook", False):
            p.register_post_accumulate_grad_hook(_seen)
            p._grad_seen_hook = True
        p._grad_seen = False


def _seen(p: torch.Tensor) -> None:
    p._grad_seen = True


def untouched_to_none(params: list[torch.Tensor]) -> None:
    """A gradient no backward reached goes back to None, as it would be without blocks, so the optimizer skips its
    parameter (a zero gradient would still move AdamW's moments and apply weight decay)."""
    for p in params:
        if getattr(p, "_grad_seen", None) is False:
            p.grad = None
        p._grad_seen = None


TRIM_GROWTH_GB = 0.2
"""A later micro-batch trims the heap again once the resident size grew by this much beyond its level after the
first micro-batch that followed the last trim."""

_level = {"rss_gb": None}


def _trim() -> None:
    trim_heap()
    _level["rss_gb"] = None  # the next micro-batch faults its working set in again: its level is the new base


def after_micro_batch(index: int) -> None:
    """What the trainer calls after micro-batch ``index``'s backward: after the first (the longest), hand the C
    heap's free pages back (``trim_heap``); after a later one, again once the process's resident size has grown
    by ``TRIM_GROWTH_GB`` beyond its level after the first micro-batch that followed the last trim.

    Why: a micro-batch's activations are freed on glibc's heap, which keeps the pages the next micro-batch does
    not reuse; the first micro-batch sets the heap (``Trainer.micro_batches``), and the second, though shorter,
    still grows it by ~0.3-0.4 GB (``scripts/heap_phases.py`` on a 16 x 4 SCoRe step: peak 4.80 GB trimming
    here, 4.92 never). In a run the heap's extent is set earlier, by the engine's validation and rollouts
    (2.0-2.4 GB, half of it free), and later micro-batches land on free pages of it not touched before: the
    resident size climbed by 0.5-0.7 GB through a step (``scripts/run_phases.py``, ``results/signal-arith.md``
    §6). Not after every micro-batch: each trim makes the next micro-batch fault its activations in again, and
    page faults are dear on these VMs (trimming after every micro-batch cost ~7% of the trainer's CPU in a probe).
    Growth counts from the level after a trim's next micro-batch, not from the trim itself: a first version
    that counted from the trim took the re-faulted activations for growth, trimmed after most micro-batches and
    made a run's steps 1.15-1.17x slower."""
    if index == 0:
        _trim()
        return
    rss = rss_gb()
    if rss is None:
        return
    if _level["rss_gb"] is None:
        _level["rss_gb"] = rss
    elif rss - _level["rss_gb"] > TRIM_GROWTH_GB:
        _trim()


def before_optimizer_step(params: list[torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    """``untouched_to_none`` then ``flat_adam_state``: what the trainer calls between backward and the step.
    First the heap is trimmed: the micro-batches' freed pages would otherwise stay resident under the optimizer
    step (and, in the first step, its new moments): that step's peak 3.5 GB instead of 5.0 (``after_micro_batch``)."""
    _trim()
    untouched_to_none(params)
    flat_adam_state(optimizer)


MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def flat_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Put an Adam(W)'s moments in one block per moment and (dtype, device): zeros with ``step`` 0 where a
    parameter has no state yet (what the optimizer's first step would create), copies where it has (a loaded
    checkpoint). Does nothing when they already are in blocks; call it before ``optimizer.step()``."""
    if any(group.get("fused") or group.get("capturable") for group in optimizer.param_groups):
        return  # those keep ``step`` on the device: left to the optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if getattr(optimizer, "_flat_blocks", None) is not None and all(
            optimizer.state.get(p, {}).get("exp_avg") is not None
            and optimizer.state[p]["exp_avg"].untyped_storage().data_ptr() in optimizer._flat_blocks
            for p in params):
        return
    amsgrad = any(group.get("amsgrad") for group in optimizer.param_groups)
    ptrs = set()
    for name in MOMENTS[:3 if amsgrad else 2]:
        for p, view in zip(params, _blocks(params)):
            state = optimizer.state[p]
            if name in state:
                view.copy_(state[name])
            if "step" not in state:
                state["step"] = torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype() == torch.float64
                                             else torch.float32)  # as Adam's _init_group
            state[name] = view
            ptrs.add(view.untyped_storage().data_ptr())
    optimizer._flat_blocks = ptrs


def moment_blocks(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The blocks ``flat_adam_state`` put the optimizer's moments in and that its state still uses (a loaded
    checkpoint's tensors are not blocks until the next step), each once."""
    opt = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the optimizer
    ptrs = getattr(opt, "_flat_blocks", None) or set()
    if not ptrs:
        return []
    found = {}
    for state in opt.state.values():
        for name in MOMENTS:
            t = state.get(name)
            if isinstance(t, torch.Tensor) and t._base is not None and t.untyped_storage().data_ptr() in ptrs:
                found[t.untyped_storage().data_ptr()] = t._base
    return list(found.values())


def _bytes(block: torch.Tensor) -> memoryview:
    return memoryview(block.view(torch.uint8).numpy())


@contextlib.contextmanager
def paged_out(optimizer: torch.optim.Optimizer):
    """Inside: the optimizer's moment blocks are written to an unlinked temporary file and their pages handed back
    to the OS; on leaving (also on an error) every byte is read back into the same blocks, so the optimizer's state
    tensors, views of them, are bitwise what they were. Nothing may step the optimizer inside.

    Why: a training run's validation (fp32, greedy, 200 problems) holds the engine's fp32 weights and K/V caches
    while AdamW's moments (1.08 GB for the 135M model) sit unused, and that made it the run's resident peak
    (4.95-5.07 GB on a 2-core Xeon, above every training step's: ``results/signal-arith.md`` §6). Writing and
    reading them back costs a second or two against the validation's minutes. Does nothing where the moments are
    not in CPU blocks or pages cannot be dropped (no glibc), and, with a warning, where the file cannot be written
    (a full disk): the moments then stay resident, as before."""
    blocks = [b for b in moment_blocks(optimizer) if b.device.type == "cpu"] if can_drop_pages() else []
    f = None
    if blocks:
        try:
            f = tempfile.TemporaryFile(prefix="scorebench-moments-")
            for b in blocks:
                f.write(_bytes(b))
            f.flush()
        except OSError as e:
            warnings.warn(f"AdamW's moments stay in memory during validation: writing them out failed ({e})")
            if f is not None:
                f.close()
            f = None
    if f is None:
        yield
        return
    with f:
        try:
            for b in blocks:
                drop_pages(b)
            yield
        finally:
            f.seek(0)
            for b in blocks:
                view, done = _bytes(b), 0
                while done < len(view):
                    n = f.readinto(view[done:])
                    if not n:
                        raise RuntimeError("the optimizer's paged-out moments could not be read back")
                    done += n
