"""One run, N processes: data parallelism for ``accelerate launch --num_processes N -m scorebench run …`` (or
``torchrun --nproc_per_node N -m scorebench run …``).

The rule of the whole module: every rank computes its *share* of the work, the shares are gathered, and only rank
0 writes the run directory. What a share is:
- evaluation and SFT data generation: whole engine chunks, dealt round-robin (``rollout``), so every chunk is the
  one a single process would have run — same prompts, same random streams, same episodes;
- an RL step: a contiguous block of the step's problems with all their samples (``shard``), so leave-one-out
  baselines stay within a problem;
- an SFT batch: whole episodes (``shard_groups``).
The trainer makes the gradient the one of the whole batch (a global loss denominator; accelerate averages the
gradients), so every rank takes the same optimizer step.

Why a crashed rank cannot hang the run: the launcher (torch.distributed.run, which accelerate uses) stops the other
ranks when one exits non-zero, gloo and NCCL fail a collective whose peer is gone, and every collective here turns
that failure into one line (``DistError``); the process group's timeout (``SCOREBENCH_DIST_TIMEOUT`` seconds,
default 1800) bounds the rest.
"""
from __future__ import annotations

import datetime
import os
import signal
from typing import Callable, Sequence


class DistError(RuntimeError):
    """Another process of this run is gone; one line for the CLI."""


def world() -> int:
    """Number of processes in this run (1 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only this process writes run directories, logs and plots."""
    return rank() == 0


def init(device: str) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA) through accelerate's PartialState, which the Trainer's
    Accelerator then reuses; a no-op in a single process. ``device`` is the resolved "cpu" or "cuda"."""
    if world() == 1:
        return
    from accelerate import PartialState  # in a function: accelerate imports torch

    def stopped(signum, frame):  # the launcher stops the other ranks when one fails: say so, in one line
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise DistError(f"rank {rank()} of {world()}: stopped by the launcher because another process of this run "
                        "failed (see its error, or the launcher's report); finished episodes and checkpoints are "
                        "saved — rerun the same command to resume")
    signal.signal(signal.SIGTERM, stopped)
    timeout = datetime.timedelta(seconds=float(os.environ.get("SCOREBENCH_DIST_TIMEOUT", "1800")))
    PartialState(cpu=device == "cpu", timeout=timeout)


def _collective(fn, *args):
    try:
        return fn(*args)
    except RuntimeError as e:  # gloo/NCCL: connection closed, timeout, peer aborted
        raise DistError(f"rank {rank()} of {world()}: lost contact with another process of this run (one crashed "
                        f"or was killed; its error is above): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                        ) from None


def barrier() -> None:
    if world() > 1:
        import torch.distributed as td
        _collective(td.barrier)


def gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if world() == 1:
        return [obj]
    import torch.distributed as td
    out: list = [None] * world()
    _collective(td.all_gather_object, out, obj)
    return out


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if world() == 1:
        return [float(v) for v in values]
    import torch
    import torch.distributed as td
    dev = f"cuda:{local_rank()}" if td.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors only
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=dev)
    _collective(td.all_reduce, t)
    return t.tolist()


def shard(items: list, r: int | None = None, n: int | None = None) -> list:
    """This rank's contiguous block of ``items`` (sizes differ by at most one; earlier ranks get the extra)."""
    r, n = rank() if r is None else r, world() if n is None else n
    q, extra = divmod(len(items), n)
    start = r * q + min(r, extra)
    return items[start:start + q + (1 if r < extra else 0)]


def shard_groups(seqs: list, r: int | None = None, n: int | None = None) -> list:
    """This rank's share of training sequences, keeping the pieces of one episode (same ``group``) together."""
    order: dict = {}
    for s in seqs:
        order.setdefault(s.group if s.group is not None else id(s), []).append(s)
    return [s for g in shard(list(order.values()), r, n) for s in g]


def rollout(fn: Callable[[list], list], examples: list, chunk_size: int,
            on_episodes: Callable[[list], None] | None = None, bar=None) -> list:
    """Run ``fn`` (a rollout of one chunk → its episodes) on the chunks of ``examples`` this rank owns — chunk i
    on rank i mod N — and return every chunk's episodes, in order, on every rank. After each round of N chunks the
    round's episodes are gathered and handed to ``on_episodes`` on rank 0 (the run directory persists them before
    the next round, so a killed run keeps what it finished); ``bar`` (a tqdm on rank 0) counts problems."""
    chunks = [examples[i:i + chunk_size] for i in range(0, len(examples), chunk_size)]
    n, out = world(), []
    for start in range(0, len(chunks), n):
        mine = start + rank()
        got = fn(chunks[mine]) if mine < len(chunks) else []
        eps = [e for part in gather(got) for e in part]  # rank order = chunk order
        if on_episodes and is_main():
            on_episodes(eps)
        out += eps
        if bar is not None:
            bar.update(sum(len(c) for c in chunks[start:start + n]))
    return out
