"""Registries for tasks, methods and engines.

A plugin package registers by declaring an entry point in the group ``scorebench.<kind>`` — so ``pip install
my-method`` is enough and no core file changes (the lm-evaluation-harness pattern). Methods, built-in or not, come in
only that way; built-in tasks and engines also register with ``@TASKS.register("name")`` when their module is
imported (named here as strings: the registry finds them, it does not depend on them). An entry point whose object
is not of the registry's base class is refused with a warning.
"""
from __future__ import annotations

import difflib
import importlib
import warnings
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from .method import Method

T = TypeVar("T")


class UnknownName(KeyError):
    """Raised for a name no registry entry or plugin provides; its message is one line for the CLI."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), base: type | None = None):
        """``base``: the class every entry point's object must subclass (None: anything)."""
        self.kind = kind
        self.base = base
        self.group = f"scorebench.{kind}"
        self._items: dict[str, T] = {}
        self._builtin_modules = builtin_modules
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            try:
                obj.name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj
        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in self._builtin_modules:
            importlib.import_module(mod)
        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue
            try:
                obj = ep.load()
                self._check(obj)
            except Exception as e:  # a broken plugin must not take the harness down
                warnings.warn(f"scorebench: could not load {self.kind} plugin {ep.name!r} ({ep.value}): {e}")
                continue
            self._items.setdefault(ep.name, obj)
            try:
                obj.name = ep.name
            except (AttributeError, TypeError):
                pass

    def _check(self, obj) -> None:
        if self.base is None:
            return
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{obj!r} is not a subclass of {self.base.__module__}.{self.base.__qualname__}")

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownName(f"unknown {self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r}"
                              f" (known: {', '.join(sorted(self._items))}){hint}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())


TASKS: Registry = Registry("tasks", ("scorebench.tasks.arith", "scorebench.tasks.math500",
                                     "scorebench.tasks.code"))
METHODS: Registry = Registry("methods", base=Method)
"""Built-in methods and plugins alike come in through the ``scorebench.methods`` entry points (pyproject.toml)."""
ENGINES: Registry = Registry("engines", ("scorebench.engines.hf", "scorebench.engines.vllm"))
