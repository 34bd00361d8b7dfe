"""``scorebench methods``: the registered methods, one a line."""
from __future__ import annotations

from ..registry import METHODS


def main(a) -> int:
    for name, cls in METHODS.items():
        print(f"{name:20s} {getattr(cls, 'description', '')}")
    return 0
