"""What several subcommands share: the error they raise for bad input, ``K=V`` parsing, and their flags from
``RunConfig`` (declared once, there) with the few differences every subcommand makes."""
from __future__ import annotations

import argparse
import json

from ..device import CPU_BATCH, GPU_BATCH
from ..runner import RunConfig
from . import flags
from .errors import CLIError


def kv(items: list[str] | None, flag: str) -> dict:
    """Parse ``key=value`` pairs; values are JSON when they parse (numbers, booleans), else strings."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise CLIError(f"{flag} expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


BATCH_SIZE = {"default": None, "note": f"(default: {CPU_BATCH} on a CPU, {GPU_BATCH} on CUDA)"}
"""``--batch-size`` on the command line: left out, it follows the device (``device.default_batch_size``)."""


def config_flags(parser: argparse.ArgumentParser, *names: str, **changes: dict) -> None:
    """Flags for the ``RunConfig`` fields ``names`` (see ``flags.add``); ``--batch-size`` follows the device."""
    if "batch_size" in names:
        changes.setdefault("batch_size", BATCH_SIZE)
    flags.add(parser, RunConfig, *names, **changes)


def preset_flag(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--preset``: not a ``RunConfig`` field but the ``preset`` entry of its ``method_args``."""
    parser.add_argument("--preset", default=default,
                        help="training preset of a method that trains: cpu-small, paper, or a JSON file"
                             + ("" if default else " (default: cpu-small)"))
