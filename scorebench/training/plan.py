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

EMBEDDED_STEP = {"bfloat16": 5.5, "float32": 9.5}
"""Seconds per two-turn SCoRe episode (rollouts + trainer step), embedded 135M model, 128-token cap, micro-batches
of 8, one thread, measured by ``scripts/step_ab.py`` on a 2-core AMD EPYC (Zen 4) on 2026-12-01
(results/signal-arith.md: 85-91 s bf16, 151-153 s fp32 for 16 episodes)."""
EMBEDDED_PEAK_GB = 8.0
"""Peak resident memory of a whole ``cpu-learn`` run (16 x 4 episodes a step, micro-batches of 4, fp32 validation
on 200 problems): VmHWM 8.0 GB of seed 0 at its step-8 validation (commit 5a2dbc1, 2-core AMD EPYC). A 4 x 4
step alone peaks at 4.9 GB (``scripts/step_ab.py --one auto --micro 4``, commit 3ab7653); results/signal-arith.md."""
VAL_EPISODE_S = 3.0
"""Seconds per greedy two-turn validation problem at the start of training (fp32, one thread, same machine)."""


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
        msg += (f"; expect ~{exp['minutes']} min and ~{exp['peak_gb']:.0f} GB peak memory (measured on a 2-core AMD "
                "EPYC; other CPUs differ up to 3x)")
    return msg + ". --limit bounds evaluation only."
