"""Reading the data files shipped in ``scorebench/data``; the ``Task`` base class itself is
``scorebench.api.task``'s (kept importable from here)."""
from __future__ import annotations

import gzip
import json
from importlib.resources import files

from ..api.task import Task  # noqa: F401  (the base class; its home is the api)


class DataError(ValueError):
    """A malformed data file or line; the message names the file and line."""


def data_path(name: str):
    return files("scorebench") / "data" / name


def read_jsonl_gz(name: str) -> list[dict]:
    """Read a gzipped JSONL file shipped in ``scorebench/data``; a bad line raises DataError naming it."""
    path = data_path(name)
    rows = []
    with gzip.open(str(path), "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: malformed JSON line ({e.msg})") from None
    return rows
