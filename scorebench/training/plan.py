"""How big a training run is, said before it starts: episodes, optimizer steps, validation, and — for the embedded
model on a CPU — the wall time and peak memory to expect, from a measured table; a run whose expected peak memory
exceeds what the machine has free is refused before anything loads.

Why a measured table and not a model of the hardware: CPU speed for this workload varies 3x between the machines
this project runs on (AMX or not, Zen 4 or not), so the honest figure is "what it measured on machine X", labelled
as such, and the user scales it.
"""
from __future__ import annotations

import math

from ..machine import proc_field

EMBEDDED_STEP = {"bfloat16": 2.5, "float32": 2.8}
"""Seconds per two-turn SCoRe episode (rollouts + trainer step), embedded 135M model, ``cpu-learn`` (16 x 4 a step,
128-token cap, micro-batches of <= 768 tokens), one thread, on a 2-core Intel Xeon with AMX (2026-12-03): bf16 from
``runs/score-arith-memory-t768-8steps`` (8 steps, validation time taken out; commit 52ec92f), fp32
(``--method-arg dtype=float32``, rollouts in fp32 too) from a 2-step run at 21e5ce5 (not shipped). The same code's
bf16 on a 2-core AMD EPYC (Zen 4): 3.1 s (``runs/score-arith-memory-trim``, 3 steps)."""
EMBEDDED_PEAK_GB = 6.0
"""Peak resident memory of a ``cpu-learn`` run (fp32 validation on 200 problems included), rounded up from the highest
measured (same machine): 5.54 GB training in fp32 (2 steps), 5.08 GB in bf16 (8 steps, at its last validation;
``results/signal-arith/run-phases-t768-8steps.json``). A whole 32-step run at this code was not measured; at
commit 5a2dbc1 one peaked at 8.0 GB (results/signal-arith.md)."""
VAL_EPISODE_S = 1.33
"""Seconds per greedy two-turn validation problem (fp32, one thread; the 8-step run above: 299, 254, 246 s for 200)."""


def available_gb() -> float | None:
    """MemAvailable from /proc/meminfo, in GB; None where it cannot be read."""
    kb = proc_field("/proc/meminfo", "MemAvailable:")
    return kb / 1e6 if kb is not None else None


def expected(plan: dict, dtype: str, embedded: bool, on_cpu: bool, threads: int) -> dict:
    """Wall time (minutes) and peak memory (GB) to expect, where measured (embedded model on a CPU); else {}."""
    if not (embedded and on_cpu) or dtype not in EMBEDDED_STEP:
        return {}
    speed = max(1.0, threads ** 0.8)  # two threads measured ~1.7x one on these machines
    train_s = plan.get("episodes", 0) * EMBEDDED_STEP[dtype] / speed
    val_s = plan.get("val_points", 0) * plan.get("val_problems", 0) * VAL_EPISODE_S / speed
    return {"minutes": math.ceil((train_s + val_s) / 60), "peak_gb": EMBEDDED_PEAK_GB}


def line(method: str, plan: dict, exp: dict) -> str:
    """The one line ``scorebench run`` prints before training."""
    parts = [f"{method} will train: {plan['steps']:,} optimizer steps"]
    if plan.get("detail"):
        parts[0] += f" ({plan['detail']})"
    if plan.get("episodes"):
        parts.append(f"{plan['episodes']:,} episodes")
    if plan.get("val_points"):
        parts.append(f"validation on {plan['val_problems']} problems at {plan['val_points']} points")
    msg = ", ".join(parts)
    if exp:
        msg += (f"; expect ~{exp['minutes']} min and ~{exp['peak_gb']:.0f} GB peak memory (measured on a 2-core Intel "
                "Xeon with AMX; other CPUs differ up to 3x)")
    return msg + ". --limit bounds evaluation only."
