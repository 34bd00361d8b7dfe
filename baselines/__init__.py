"""Baselines from the paper: base, Self-Refine, STaR, STaR+, Pair-SFT, Pair-SFT+.

Each registers through the ``scorebench.methods`` entry point (pyproject.toml), exactly as a plugin would;
importing this package also registers them for in-tree use without an install.
"""
from scorebench.registry import METHODS

from .base import BaseMethod

METHODS.register("base")(BaseMethod)
