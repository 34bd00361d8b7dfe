"""What a method is: how it prompts (a protocol config) and how it trains (or not). Evaluation is never method
code — the runner evaluates whatever policy ``train`` leaves behind with the shared protocol.

A plugin subclasses ``Method`` and declares an entry point in the ``scorebench.methods`` group:

    [project.entry-points."scorebench.methods"]
    my-method = "my_pkg:MyMethod"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import ProtocolConfig


@dataclass
class RunContext:
    """Everything a method's ``train`` may use; owned by the runner."""
    config: Any
    """The resolved RunConfig."""
    task: Any
    """The Task instance (train() for data, evaluate_batch for rewards)."""
    engine: Any
    """The sampling engine, holding the current policy (``engine.model`` on the HF engine)."""
    run_dir: Any
    """The RunDir; methods write their datasets and logs into ``run_dir.path``."""
    extra: dict = field(default_factory=dict)


class Method:
    name: str = "method"
    description: str = ""
    trains: bool = False
    """False for prompting-only methods (base, Self-Refine): the runner skips training."""

    def protocol(self, turns: int) -> ProtocolConfig:
        """The protocol this method is evaluated (and trained) under."""
        return ProtocolConfig(turns=turns)

    def train(self, ctx: RunContext) -> str | None:
        """Train; return a path to the final policy, or None when ``ctx.engine`` already holds it."""
        return None
