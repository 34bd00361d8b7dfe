"""The registries. Their home is ``scorebench.api.registry``; this module keeps the old import path."""
from .api.registry import ENGINES, METHODS, TASKS, Registry, UnknownName  # noqa: F401
