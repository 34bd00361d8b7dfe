"""``scorebench tasks``: the registered tasks, one a line."""
from __future__ import annotations

from ..registry import TASKS


def main(a) -> int:
    for name, cls in TASKS.items():
        print(f"{name:12s} {getattr(cls, 'kind', ''):5s} {getattr(cls, 'description', '')}")
    return 0
