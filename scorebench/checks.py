"""Checks of user input that run before any model loads or any file is written.

Why a separate pass: a mistake found after the model loaded costs the load, and one found after ``config.json``
was written also blocks the corrected command ("holds a run with a different config"). So every flag, task
argument, preset, method argument and output path is checked here first, and each problem is one
``UsageError`` line (exit 2 in the CLI).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import typing
from pathlib import Path

from . import dist
from .api.types import Episode


class UsageError(ValueError):
    """Bad user input; the message is one line for the CLI."""


def at_least(value, low, flag: str) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} must be >= {low}, got {value}")


def one_of(value, choices, flag: str) -> None:
    if value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _accepts(expected: type, value) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def constructor_args(cls, args: dict, what: str, flag: str) -> None:
    """Check ``args`` against ``cls``'s constructor: every key a parameter it takes, every value of the
    parameter's declared type (or its default's) where that is a plain int, float, bool or str."""
    sig = inspect.signature(cls.__init__)
    params = {n: p for n, p in sig.parameters.items()
              if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: fall back to the defaults' types
        hints = {}
    for k, v in args.items():
        if k not in params:
            if takes_any:
                continue
            known = f"known: {', '.join(params)}" if params else "it takes none"
            raise UsageError(f"{flag} {k}: {what} takes no argument {k!r} ({known})")
        expected = hints.get(k)
        if expected not in _TYPE_WORDS:
            default = params[k].default
            expected = type(default) if default is not inspect.Parameter.empty and default is not None else None
        if expected in _TYPE_WORDS and not _accepts(expected, v):
            raise UsageError(f"{flag} {k} expects {_TYPE_WORDS[expected]}, got {v!r}")


def output_dir(path: str | Path, flag: str = "--out") -> None:
    """``path`` is, or can be created as, a writable directory: not a file, not under a file, and its nearest
    existing ancestor writable (``os.access`` also reports a read-only file system, even to root)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{flag} {p} is a file, not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {p}: the directory is not writable")
        return
    _creatable(p, flag)


def output_file(path: str | Path, flag: str = "--out") -> None:
    """``path`` can be written as a file: not a directory, and its directory exists or can be created."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p} is a directory, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag} {p}: the file is not writable")
    _creatable(p, flag)


def _creatable(p: Path, flag: str) -> None:
    """The nearest existing ancestor of ``p`` is a directory we may create entries in."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {p}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"{flag} {p}: cannot create it, {parent} is not writable")
            return


def method_args(cfg, method) -> None:
    """Check ``--preset`` and ``--method-arg`` for any method, built-in or plugin. A method that does not train
    takes none; one that trains checks them itself, in ``Method.configure`` (a ValueError or TypeError there is a
    usage error: its first line, naming the method)."""
    if not method.trains:
        if cfg.method_args:
            given = ", ".join(sorted(cfg.method_args))
            raise UsageError(f"method {cfg.method!r} does not train and takes no --preset or --method-arg "
                             f"(given: {given})")
        return
    try:
        method.configure(dict(cfg.method_args or {}))
    except (ValueError, TypeError) as e:
        raise UsageError(f"method {cfg.method!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None


class PluginError(UsageError):
    """A method's ``rollout`` broke its contract (README, "Writing a plugin"); the message names the method."""


def _plugin(name: str, method) -> str:
    cls = type(method)
    return f"method {name!r} ({cls.__module__}.{cls.__qualname__})"


def rollout_episodes(name: str, method, examples: list[dict], turns: int, got) -> list:
    """``got``, the episodes ``method.rollout`` returned for ``examples``, if it keeps the contract the runner and
    the run directory rely on: a list of one ``Episode`` per example, in the examples' order, each with
    ``id == str(example["id"])``, ``turns`` graded attempts and a numeric reward on each; else ``PluginError``
    (one line naming the method). Checked before the chunk is written, so a broken plugin leaves no episodes."""
    who = _plugin(name, method)
    want = f"one Episode per example, in order ({len(examples)} for this chunk)"
    if got is None or isinstance(got, (str, bytes, dict)) or not hasattr(got, "__len__"):
        raise PluginError(f"{who}: rollout returned {type(got).__name__}, not a list of episodes; it must return "
                          f"{want}")
    got = list(got)
    if len(got) != len(examples):
        raise PluginError(f"{who}: rollout returned {len(got)} episode{'s' * (len(got) != 1)} for "
                          f"{len(examples)} example{'s' * (len(examples) != 1)}; it must return {want}")
    for i, (ep, ex) in enumerate(zip(got, examples)):
        if not isinstance(ep, Episode):
            raise PluginError(f"{who}: rollout returned a {type(ep).__name__} at position {i}, not a "
                              "scorebench.protocol.Episode")
        if ep.id != str(ex["id"]):
            raise PluginError(f"{who}: rollout's episode {i} has id {ep.id!r} but example {i} has id "
                              f"{str(ex['id'])!r}; it must return {want}, each with id = str(example['id'])")
        attempts = ep.attempts
        if len(attempts) != turns:
            raise PluginError(f"{who}: rollout's episode {ep.id!r} has {len(attempts)} graded attempt"
                              f"{'s' * (len(attempts) != 1)}, but the run asks for {turns} (--turns)")
        for k, t in enumerate(attempts):
            r = t.reward
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
                raise PluginError(f"{who}: rollout's episode {ep.id!r} attempt {k + 1} has reward {r!r}, not a "
                                  "number (grade it with task.evaluate_batch or task.grade)")
    return got


@contextlib.contextmanager
def no_trace_of_broken_plugin(rd, method, had_episodes: bool, bar=None):
    """Around evaluation: when a method's rollout breaks its contract (``PluginError``) before any episode of
    this run directory exists and the method trained nothing, remove the ``config.json`` the run wrote, so the
    failed run leaves no directory behind (the runner removes it once empty) and the fixed plugin starts clean.
    A method that trained keeps its policy: rerunning evaluates it without training again. The progress ``bar``
    is erased, so the error is the one line left on the terminal."""
    try:
        yield
    except PluginError:
        if bar is not None:
            bar.leave = False
            bar.close()
        if dist.is_main() and not had_episodes and not method.trains:
            left = [p.name for p in rd.path.iterdir()]
            if left == ["config.json"] and not rd.episodes():
                rd.config_path.unlink()
        raise
