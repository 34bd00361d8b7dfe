"""The engine interface. Its home is ``scorebench.api.engine`` (Engine, render_ids) and ``scorebench.api.types``
(SamplingParams, Completion, Message); this module keeps the old import path."""
from ..api.engine import Engine, render_ids  # noqa: F401
from ..api.types import Completion, Message, SamplingParams  # noqa: F401
