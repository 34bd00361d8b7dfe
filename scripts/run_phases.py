"""A real ``scorebench run`` traced by phase: validation points, each step's rollouts, shared-prompt forward,
micro-batches, the prompts' backward and the optimizer step, the test evaluation — per phase the highest resident
size and glibc's ``mallinfo2`` (``arena``, ``used``, ``mapped``; see ``heap_phases.py``), read every 5 ms. The run
itself is unchanged (the tracer only labels phases), so its run directory is a run like any other.

    OMP_NUM_THREADS=1 python scripts/run_phases.py phases.json run --method score --task arith --preset cpu-learn \\
        --method-arg stage1_steps=1 --method-arg stage2_steps=2 --method-arg val_every=3 --limit 50 --out RUN

(``results/signal-arith/run-phases-*.json`` were written by this script when it lived in /tmp as trace_run.py,
the name their run directories' ``argv`` shows.) glibc only.
"""
from __future__ import annotations

import json
import sys
import time

import phase_memory  # scripts/: python puts the script's own folder on the path


def _labelled(phase, owner, name, label):
    """Replace ``owner.name`` by a wrapper that sets ``phase[0] = label(*args)`` before calling it."""
    f = getattr(owner, name)

    def wrapper(*a, **k):
        phase[0] = label(*a)
        return f(*a, **k)
    setattr(owner, name, wrapper)


def main():
    out, sys.argv = sys.argv[1], [sys.argv[0]] + sys.argv[2:]
    phase, rows, order = phase_memory.start("run_phases.py")
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
    _labelled(phase, Trainer, "loss", mb_label)
    _labelled(phase, Trainer, "shared_prompts", lambda *a: f"step {now['step']} prompts forward")
    from scorebench.training import trainer as trainer_mod
    from scorebench.training.prompts import SharedPrompts
    _labelled(phase, SharedPrompts, "backward", lambda *a: f"step {now['step']} prompts backward")
    _labelled(phase, trainer_mod, "before_optimizer_step", lambda *a: f"step {now['step']} optimizer")
    _labelled(phase, rl, "run_protocol", lambda *a: f"rollouts for step {now['step'] + 1}")
    _labelled(phase, Validator, "__call__", lambda self, step, *a: f"validation at {step}")
    _labelled(phase, runner, "engine_for", lambda cfg, model: "test (load + episodes)" if model else "load")
    import scorebench.training.memory as memory
    trims, trim = {}, memory._trim

    def counted_trim():  # the trainer's heap trims (after the first micro-batch, on growth, before the optimizer)
        trims[now["step"]] = trims.get(now["step"], 0) + 1
        trim()
    memory._trim = counted_trim
    from scorebench.cli import main as cli
    try:
        rc = cli(sys.argv[1:])
    finally:
        time.sleep(0.05)
        with open(out, "w") as f:
            json.dump({"phases": {p: rows[p] for p in order}, "trims_by_step": trims, "argv": sys.argv[1:]}, f,
                      indent=1)
    sys.exit(rc)


if __name__ == "__main__":
    main()
