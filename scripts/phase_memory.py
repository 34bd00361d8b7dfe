"""What ``heap_phases.py`` and ``run_phases.py`` share: a thread that reads the resident size and glibc's
``mallinfo2`` every 5 ms and keeps, per phase (whatever label ``phase[0]`` holds at the time), the highest of
each — ``arena`` (the heap's extent), ``used`` (what is allocated in it), ``mapped`` (allocations glibc mapped on
their own). glibc only (``mallinfo2``: glibc 2.33 or later)."""
from __future__ import annotations

import ctypes
import sys
import threading
import time

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def start(script: str) -> tuple[list[str], dict[str, dict], list[str]]:
    """(phase, rows, order): set ``phase[0]`` to label what runs next; ``rows[label]`` holds that phase's highs
    (``rss_gb``, ``arena_gb``, ``used_gb``, ``mapped_gb``), ``order`` the labels as first seen. Exits with a
    message naming ``script`` where there is no glibc."""
    from scorebench.device import _libc
    from scorebench.machine import rss_gb
    libc = _libc()
    if not libc:
        sys.exit(f"{script} needs glibc")
    libc.mallinfo2.restype = _MallInfo2
    phase, rows, order = ["load"], {}, []

    def sample():
        while True:
            p, r, m = phase[0], rss_gb() or 0.0, libc.mallinfo2()
            if p not in rows:
                rows[p] = dict.fromkeys(("rss_gb", "arena_gb", "used_gb", "mapped_gb"), 0.0)
                order.append(p)
            for key, v in zip(rows[p], (r, m.arena / 1e9, m.uordblks / 1e9, m.hblkhd / 1e9)):
                rows[p][key] = round(max(rows[p][key], v), 3)
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    return phase, rows, order
