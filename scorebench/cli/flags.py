"""Flags generated from a config dataclass, so that a default and its help are written once, in the dataclass.

A field's attribute docstring (the string right under it, as ``RunConfig`` and ``TrainConfig`` write them) is its
help, its default the flag's default, and its annotation the flag's type: ``--name`` for ``name: int | None =
None``, a switch for ``name: bool = False``, and a repeatable ``--task-arg K=V`` for ``task_args: dict``. Where the
command line differs from the dataclass (a required flag, a default that depends on the device), ``add`` takes the
difference per field and nothing else.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import textwrap
import typing


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, so ``--help`` answers "what happens if I leave it out" (a help
    that already names its default, or a default of None/False, says it in words instead)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def docstrings(cls: type) -> dict[str, str]:
    """Each field's attribute docstring: the string literal right after the field's line in the class body (read
    from the source, since Python keeps no such docstring), whitespace folded to single spaces."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    out = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            out[node.target.id] = " ".join(after.value.value.split())
    return out


def sentences(text: str, n: int) -> str:
    """The first ``n`` sentences of ``text`` (a sentence ends at ". " before a word; "e.g." and "i.e." do not)."""
    parts = re.split(r"(?<!\be\.g)(?<!\bi\.e)\.\s+(?=\S)", text)
    return ". ".join(parts[:n]).rstrip(".") + "."


def help_text(doc: str) -> str:
    """A docstring as argparse help: a lower-case start (unless the first word is an acronym like HF), no closing
    full stop, single backticks for reST's double ones, "None = X" (the dataclass's way to say what no value
    means) as "default: X", and ``%`` escaped for argparse's formatting."""
    doc = doc.strip().rstrip(".").replace("``", "`").replace("%", "%%")
    doc = re.sub(r"\bNone = ", "default: ", doc)
    if len(doc) > 1 and doc[1].islower():
        doc = doc[0].lower() + doc[1:]
    return doc


def _flag_type(hint) -> type | None:
    """``int`` for ``int`` and ``int | None`` (likewise float, str, bool, dict); None for any other type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if len(args) == 1 else hint
    return base if base in (int, float, str, bool, dict) else None


def add(parser: argparse.ArgumentParser, cls: type, *names: str, **changes: dict) -> None:
    """Add one flag per field ``names`` of the dataclass ``cls``, in that order. ``changes[name]`` holds what the
    command line does differently for that field: ``add_argument`` keywords (``required=True``, a ``default``, a
    ``help`` of its own where the flag means something narrower) and ``note``, words appended to the help, or
    ``sentences``, how many of the docstring's sentences to keep."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    docs, hints = docstrings(cls), typing.get_type_hints(cls)
    unknown = set(changes) - set(names)
    if unknown:
        raise ValueError(f"changes for fields not added: {sorted(unknown)}")
    for name in names:
        f, change = fields[name], dict(changes.get(name, {}))
        doc = docs.get(name)
        if not doc:
            raise ValueError(f"{cls.__name__}.{name} has no docstring to be its --help")
        if "sentences" in change:
            doc = sentences(doc, change.pop("sentences"))
        kind = _flag_type(hints[name])
        default = None if f.default is dataclasses.MISSING else f.default
        flag, kw = "--" + name.replace("_", "-"), {"dest": name, "default": default, "help": help_text(doc)}
        if kind is bool and not default:
            kw["action"] = "store_true"
        elif kind is dict:  # task_args -> --task-arg K=V, repeated; the subcommand parses the pairs
            flag = flag.removesuffix("s")
            kw.update(action="append", metavar="K=V", help=kw["help"] + ", one K=V per flag (repeat the flag)")
        elif kind in (int, float):
            kw["type"] = kind
        elif kind is not str:  # a bool that defaults to True would need a --no- flag: none does yet
            raise TypeError(f"{cls.__name__}.{name}: no flag for type {hints[name]}")
        for other in fields:  # the docstring's `train_task` is the command line's --train-task
            kw["help"] = kw["help"].replace(f"`{other}`", "--" + other.replace("_", "-"))
        note = change.pop("note", None)
        kw.update(change)
        if kw.get("required"):  # always given: the dataclass's default is not the flag's, and --help must not say so
            kw["default"] = None
        if note:
            kw["help"] += " " + note
        parser.add_argument(flag, **kw)
