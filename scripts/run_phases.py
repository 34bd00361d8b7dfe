"""A real ``scorebench run`` traced by phase: validation points, each step's rollouts, shared-prompt forward and
micro-batches, the test evaluation — per phase the highest resident size and glibc's ``mallinfo2`` (``arena``,
``used``, ``mapped``; see ``heap_phases.py``), read every 5 ms. The run itself is unchanged (the tracer only
labels phases), so its run directory is a run like any other.

    OMP_NUM_THREADS=1 python scripts/run_phases.py phases.json run --method score --task arith --preset cpu-learn \\
        --method-arg stage1_steps=1 --method-arg stage2_steps=2 --method-arg val_every=3 --limit 50 --out RUN

(``results/signal-arith/run-phases-*.json`` were written by this script when it lived in /tmp as trace_run.py,
the name their run directories' ``argv`` shows.) glibc only.
"""
from __future__ import annotations

import ctypes
import json
import sys
import threading
import time

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]


def _labelled(owner, name, label):
    """Replace ``owner.name`` by a wrapper that sets the phase (``label(*args)``) before calling it."""
    f = getattr(owner, name)

    def wrapper(*a, **k):
        phase[0] = label(*a)
        return f(*a, **k)
    setattr(owner, name, wrapper)


phase = ["load"]


def main():
    out, sys.argv = sys.argv[1], [sys.argv[0]] + sys.argv[2:]
    from scorebench.device import _libc
    libc = _libc()
    if not libc:
        sys.exit("run_phases.py needs glibc")
    libc.mallinfo2.restype = _MallInfo2
    from scorebench.machine import rss_gb
    rows, order = {}, []

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
    import scorebench.runner as runner
    import scorebench.training.rl as rl
    from scorebench.training.trainer import Trainer
    from scorebench.training.validation import Validator
    now = {"step": 0, "mb": 0}
    step = Trainer.step

    def traced_step(self, batch, extra=None):
        now["step"], now["mb"] = self.step_count + 1, 0
        stats = step(self, batch, extra)
        phase[0] = f"after step {now['step']}"
        return stats
    Trainer.step = traced_step

    def mb_label(*a):
        now["mb"] += 1
        return f"step {now['step']} mb {now['mb'] - 1:02d} fwd+bwd"
    _labelled(Trainer, "loss", mb_label)
    _labelled(Trainer, "shared_prompts", lambda *a: f"step {now['step']} prompts forward")
    _labelled(rl, "run_protocol", lambda *a: f"rollouts for step {now['step'] + 1}")
    _labelled(Validator, "__call__", lambda self, step, *a: f"validation at {step}")
    _labelled(runner, "engine_for", lambda cfg, model: "test (load + episodes)" if model else "load")
    from scorebench.cli import main as cli
    try:
        rc = cli(sys.argv[1:])
    finally:
        time.sleep(0.05)
        with open(out, "w") as f:
            json.dump({"phases": {p: rows[p] for p in order}, "argv": sys.argv[1:]}, f, indent=1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
