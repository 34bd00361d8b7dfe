"""The one rule for deriving random seeds: a stable hash of a base seed and keys.

Why a hash and not ``seed * P + i``: linear mixes collide (seed 1, row 0 equals seed 0, row P) and, worse, make it
easy to hand two different draws the same stream — turn 2 of a conversation used to reuse turn 1's, so the first
sample replayed its own first attempt. Every independent draw names what it is (``derive_seed(seed, "turn", 2)``)
and gets its own stream; the same names give the same stream on any machine and in any process.
"""
from __future__ import annotations

import hashlib


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed for the draw named by ``keys`` under ``seed`` (ints and strings)."""
    h = hashlib.blake2b(repr((int(seed),) + tuple(keys)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & (2 ** 63 - 1)
