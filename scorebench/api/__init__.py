"""The bottom layer: what a plugin author needs, and nothing of the rest of scorebench (ARCHITECTURE.md).

- ``types``: Message, SamplingParams, Completion (what an engine returns), Turn and Episode (what is recorded);
- ``engine``: the Engine base and ``render_ids`` (the one definition of a prompt's tokens);
- ``protocol``: the self-correction protocol every method, baseline and trainer prompts through;
- ``task``: the Task base; ``method``: Method and RunContext; ``registry``: TASKS, METHODS, ENGINES;
- ``seeding``: ``derive_seed``, the one rule for random streams.
"""
from .engine import Engine, render_ids  # noqa: F401
from .method import Method, RunContext  # noqa: F401
from .protocol import (CODE_SELF_CORRECTION_INSTRUCTION, SELF_CORRECTION_INSTRUCTION, ProtocolConfig,  # noqa: F401
                       grade, problem_id, run_protocol)
from .registry import ENGINES, METHODS, TASKS, Registry, UnknownName  # noqa: F401
from .seeding import derive_seed  # noqa: F401
from .task import Task  # noqa: F401
from .types import Completion, Episode, Message, SamplingParams, Turn  # noqa: F401
