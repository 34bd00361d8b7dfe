"""Baselines from the paper: base, Self-Refine, STaR, STaR+, Pair-SFT, Pair-SFT+.

Each registers through the ``scorebench.methods`` entry point (pyproject.toml), exactly as a plugin would;
importing this package also registers them for in-tree use without an install.
"""
from scorebench.registry import METHODS

from .base import BaseMethod
from .pair_sft import PairSFTMethod, PairSFTPlusMethod
from .self_refine import SelfRefineMethod
from .star import StarMethod, StarPlusMethod

METHODS.register("base")(BaseMethod)
METHODS.register("self-refine")(SelfRefineMethod)
METHODS.register("star")(StarMethod)
METHODS.register("star+")(StarPlusMethod)
METHODS.register("pair-sft")(PairSFTMethod)
METHODS.register("pair-sft+")(PairSFTPlusMethod)
