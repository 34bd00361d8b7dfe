"""scorebench: train and measure intrinsic self-correction (SCoRe, Kumar et al. 2024)."""
from __future__ import annotations

__version__ = "0.1.0"


def get_task(name: str, **kwargs):
    """An instance of the task registered as ``name`` (built-in or plugin)."""
    from .registry import TASKS
    return TASKS.get(name)(**kwargs)


def get_method(name: str):
    """The method class registered as ``name`` (built-in or plugin)."""
    from .registry import METHODS
    return METHODS.get(name)
