"""Baselines from the paper: base, Self-Refine, STaR, STaR+, Pair-SFT, Pair-SFT+.

They register only through the ``scorebench.methods`` entry points in pyproject.toml, exactly as a plugin does
(one registration path: what works for a built-in works for a plugin, and the other way round).
"""
