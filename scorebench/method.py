"""What a method is: how it prompts (a protocol config) and how it trains (or not). Evaluation is never method
code — the runner evaluates whatever policy ``train`` leaves behind with the shared protocol.

A plugin subclasses ``Method`` and declares an entry point in the ``scorebench.methods`` group:

    [project.entry-points."scorebench.methods"]
    my-method = "my_pkg:MyMethod"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .protocol import ProtocolConfig

if TYPE_CHECKING:  # typed fields without importing torch-heavy modules at import time
    from .engines.base import Engine
    from .rundir import RunDir
    from .runner import RunConfig
    from .tasks.base import Task


@dataclass
class RunContext:
    """Everything a method's ``train`` may use; owned by the runner. A method reaches the policy and the engine only
    through it: ``trainable_model()`` for the weights to train, ``engine`` to sample, ``sync_policy(model)`` after
    the weights changed — so no method imports a concrete engine, and ``--engine vllm`` works for every method."""
    config: "RunConfig"
    """The resolved RunConfig."""
    task: "Task"
    """The Task instance (train() for data, evaluate_batch for rewards)."""
    engine: "Engine"
    """The sampling engine."""
    run_dir: "RunDir"
    """The RunDir; methods write their datasets and logs into ``run_dir.path``."""
    extra: dict = field(default_factory=dict)

    def trainable_model(self):
        """(model, tokenizer): the HF model to train. With an engine that samples from an HF model in this process
        (``hf``), that very model, so rollouts see every update; otherwise (``vllm``) the run's model loaded here,
        on the run's device, whose weights ``sync_policy`` pushes to the engine."""
        got = self.engine.trainable_model()
        if got is not None:
            return got
        from . import models
        from .device import resolve
        return models.load(self.config.model, device=resolve(getattr(self.config, "device", "auto")))

    def train_examples(self) -> list[dict]:
        """The problems a method may train on: the task's train split without its validation pool
        (``training/validation.py``), so validation curves are never measured on trained problems."""
        from .training.validation import training_split
        return training_split(self.task.train())[0]

    def sync_policy(self, model) -> None:
        """Tell the engine the policy's weights changed (after an optimizer step, or a new model object)."""
        self.engine.sync_weights(model)


class Method:
    name: str = "method"
    description: str = ""
    trains: bool = False
    """False for prompting-only methods (base, Self-Refine): the runner skips training."""

    def protocol(self, turns: int) -> ProtocolConfig:
        """The protocol this method is evaluated (and trained) under."""
        return ProtocolConfig(turns=turns)

    def rollout(self, engine, task, examples: list[dict], params, turns: int, on_episodes=None,
                chunk_size: int = 64, progress: bool = True) -> list:
        """How this method answers at evaluation: the shared protocol by default. An inference-time method
        (best-of-n, a vote over second attempts) overrides this; ``task.extract`` gives it the graded answer."""
        from .protocol import run_protocol
        return run_protocol(engine, task, examples, params, protocol=self.protocol(turns), on_episodes=on_episodes,
                            chunk_size=chunk_size, progress=progress)

    def plan(self, ctx: RunContext) -> dict | None:
        """What ``train`` will do, for the line ``scorebench run`` prints before it starts (and its memory check):
        ``steps`` (optimizer steps), optionally ``detail``, ``episodes``, ``val_problems``, ``val_points``. Called
        with a context whose engine and run directory are None; None = say nothing."""
        return None

    def train(self, ctx: RunContext) -> str | None:
        """Train; return a path to the final policy, or None when ``ctx.engine`` already holds it."""
        return None
