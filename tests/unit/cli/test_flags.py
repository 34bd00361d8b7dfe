"""Flags generated from config dataclasses (``scorebench/cli/flags.py``): each default, type and help is the
dataclass's, and the command line states only where it differs."""
import argparse
import dataclasses
import subprocess
import sys

import pytest

from scorebench.cli import build_parser, flags
from scorebench.cli import run as run_cmd
from scorebench.runner import RunConfig


@dataclasses.dataclass
class Toy:
    steps: int = 3
    """Optimizer steps; None = the preset's. A second
    line of the same docstring."""
    rate: float | None = None
    """Learning rate (e.g. 1e-4). Used by ``steps`` too."""
    name: str = "x"
    """HF model id."""
    fast: bool = False
    """Skip the slow part."""
    task_args: dict = dataclasses.field(default_factory=dict)
    """Keyword arguments for the task."""
    undocumented: int = 0


def parser(*names, **changes):
    p = argparse.ArgumentParser()
    flags.add(p, Toy, *names, **changes)
    return p


def test_docstrings_are_read_from_the_source_and_folded():
    docs = flags.docstrings(Toy)
    assert docs["steps"] == "Optimizer steps; None = the preset's. A second line of the same docstring."
    assert "undocumented" not in docs


def test_types_defaults_and_kinds_come_from_the_dataclass():
    p = parser("steps", "rate", "name", "fast", "task_args")
    a = p.parse_args([])
    assert (a.steps, a.rate, a.name, a.fast, a.task_args) == (3, None, "x", False, None)
    a = p.parse_args(["--steps", "5", "--rate", "0.5", "--fast", "--task-arg", "a=1", "--task-arg", "b=2"])
    assert (a.steps, a.rate, a.fast, a.task_args) == (5, 0.5, True, ["a=1", "b=2"])
    with pytest.raises(SystemExit):
        p.parse_args(["--steps", "x"])


def test_help_is_the_docstring_in_argparse_style():
    helps = {a.dest: a.help for a in parser("steps", "rate", "name", "task_args")._actions}
    assert helps["steps"] == "optimizer steps; default: the preset's. A second line of the same docstring"
    assert helps["rate"] == "learning rate (e.g. 1e-4). Used by --steps too"  # a field in backticks is its flag
    assert helps["name"] == "HF model id"  # an acronym keeps its capitals
    assert helps["task_args"] == "keyword arguments for the task, one K=V per flag (repeat the flag)"


def test_changes_say_only_what_the_command_line_does_differently():
    p = parser("steps", "rate", "name", steps={"required": True, "sentences": 1},
               rate={"default": 0.1, "note": "(default: 0.1 here)"}, name={"help": "the model"})
    helps = {a.dest: a for a in p._actions}
    assert helps["steps"].required and helps["steps"].default is None
    assert helps["steps"].help == "optimizer steps; default: the preset's"
    assert helps["rate"].default == 0.1 and helps["rate"].help.endswith("Used by --steps too (default: 0.1 here)")
    assert helps["name"].help == "the model"
    with pytest.raises(ValueError, match="not added"):
        parser("steps", rate={"default": 1.0})
    with pytest.raises(ValueError, match="no docstring"):
        parser("undocumented")


def test_sentences_do_not_end_at_abbreviations():
    assert flags.sentences("A (e.g. b). C. D.", 1) == "A (e.g. b)."
    assert flags.sentences("A (e.g. b). C. D.", 2) == "A (e.g. b). C."


def test_run_flags_are_runconfigs_defaults_except_where_the_cli_says():
    cfg, sub = RunConfig(), build_parser(["run"])._subparsers._group_actions[0].choices["run"]
    actions = {a.dest: a for a in sub._actions}
    cli_only = {"task": None, "batch_size": None, "task_args": None, "method_args": None}  # required, by device, K=V
    for name in (*run_cmd.FIELDS, "device"):
        assert actions[name].default == cli_only.get(name, getattr(cfg, name)), name
    assert actions["task"].required
    assert actions["seed"].help == flags.help_text(flags.docstrings(RunConfig)["seed"])


def test_help_imports_no_subcommand():
    """``scorebench --help`` lists the subcommands without importing their modules (the runner, torch)."""
    code = ("import sys; from scorebench.cli import build_parser; build_parser(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('scorebench.') and m != 'scorebench.cli.flags'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['scorebench.cli']"


def test_python_dash_m_scorebench_cli_runs():
    r = subprocess.run([sys.executable, "-m", "scorebench.cli", "methods"], capture_output=True, text=True)
    assert r.returncode == 0 and "score" in r.stdout
