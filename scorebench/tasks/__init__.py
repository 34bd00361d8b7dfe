"""Tasks: one small module each, registered by name. ``scorebench.get_task(name)`` returns an instance."""
from .base import Task, read_jsonl_gz  # noqa: F401
