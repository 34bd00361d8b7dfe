"""scorebench: train and measure intrinsic self-correction (SCoRe, Kumar et al. 2024)."""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

PRIMITIVE_CACHE_CAPACITY = 64
"""Entries kept by oneDNN's primitive cache and by ideep's (PyTorch's CPU matmuls), unless the environment already
sets ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` / ``LRU_CACHE_CAPACITY``. Why: both default to 1,024 compiled kernels of
~0.5 MB each, and a CPU RL run makes a new matmul shape at every micro-batch width and every decode length, so the
caches fill: after a 16 x 4 SCoRe step they held ~0.9 GB, and the step's peak was 0.3 GB higher with them
(``results/signal-arith.md`` section 6). The kernels a run reuses (a decode step's projections) stay the most recently
used; the rest is re-made in milliseconds. Both libraries read the variable when they first build a kernel, so it
is set when scorebench is imported, before any matmul."""
for _var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"):
    _os.environ.setdefault(_var, str(PRIMITIVE_CACHE_CAPACITY))


def get_task(name: str, **kwargs):
    """An instance of the task registered as ``name`` (built-in or plugin)."""
    from .registry import TASKS
    return TASKS.get(name)(**kwargs)


def get_method(name: str):
    """The method class registered as ``name`` (built-in or plugin)."""
    from .registry import METHODS
    return METHODS.get(name)
