"""``scorebench run``: every flag but ``--preset`` and ``--out`` is a ``RunConfig`` field."""
from __future__ import annotations

from ..device import default_batch_size
from ..dist import is_main
from ..runner import RunConfig, run
from .common import config_flags, kv, preset_flag
from .errors import CLIError

FIELDS = ("method", "task", "train_task", "model", "engine", "dtype", "compute_dtype", "limit", "turns",
          "temperature", "top_p", "max_new_tokens", "seed", "batch_size", "task_args", "method_args")
"""The ``RunConfig`` fields ``run`` takes as flags, in ``--help``'s order (then --preset, --out, --device)."""


def add_arguments(p) -> None:
    config_flags(p, *FIELDS, task={"required": True})
    preset_flag(p, default=None)
    p.add_argument("--out", default=None, help="run directory (default: runs/<method>-<task>-<config hash>)")
    config_flags(p, "device")


def main(a) -> int:
    method_args = kv(a.method_args, "--method-arg")
    if a.preset:
        if "preset" in method_args:
            raise CLIError("give the preset once: --preset or --method-arg preset=..., not both")
        method_args["preset"] = a.preset
    cfg = RunConfig(**{f: getattr(a, f) for f in (*FIELDS, "device")} | {
        "batch_size": default_batch_size(a.device, a.batch_size), "task_args": kv(a.task_args, "--task-arg"),
        "method_args": method_args})
    out = run(cfg, a.out)
    if is_main():
        print((out / "table.md").read_text(), end="")
        print(f"run directory: {out}")
    return 0
