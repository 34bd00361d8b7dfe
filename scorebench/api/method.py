"""What a method is: how it prompts (a protocol config), what arguments it takes, and how it trains (or not).
Evaluation is never method code — the runner evaluates whatever policy ``train`` leaves behind with the shared
protocol.

A plugin subclasses ``Method`` and declares an entry point in the ``scorebench.methods`` group:

    [project.entry-points."scorebench.methods"]
    my-method = "my_pkg:MyMethod"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from .engine import Engine
from .protocol import ProtocolConfig, run_protocol
from .task import Task


@dataclass
class RunContext:
    """Everything a method's ``train`` may use; owned by the runner. A method reaches the policy and the engine only
    through it: ``trainable_model()`` for the weights to train, ``engine`` to sample, ``sync_policy(model)`` after
    the weights changed — so no method imports a concrete engine, and ``--engine vllm`` works for every method.

    This class is the contract; the runner hands methods ``scorebench.context.HarnessContext``, which adds the two
    services that need the rest of the harness: ``load_model`` (the run's model, on the run's device) and
    ``train_examples`` (the train split without its validation pool)."""
    config: Any
    """The resolved RunConfig (``scorebench.config``)."""
    task: Task | None
    """The Task instance (train() for data, evaluate_batch for rewards)."""
    engine: Engine | None
    """The sampling engine."""
    run_dir: Any
    """The RunDir (``scorebench.rundir``); methods write their datasets and logs into ``run_dir.path``."""
    extra: dict = field(default_factory=dict)

    def trainable_model(self):
        """(model, tokenizer): the HF model to train. With an engine that samples from an HF model in this process
        (``hf``), that very model, so rollouts see every update; otherwise (``vllm``) the run's model loaded here,
        on the run's device, whose weights ``sync_policy`` pushes to the engine."""
        got = self.engine.trainable_model()
        return got if got is not None else self.load_model()

    def load_model(self):
        """(model, tokenizer): the run's model (``config.model``) loaded on the run's device."""
        raise NotImplementedError("this context cannot load a model (the runner's HarnessContext does)")

    def train_examples(self) -> list[dict]:
        """The problems a method may train on: the task's train split without its validation pool, so validation
        curves are never measured on trained problems."""
        raise NotImplementedError("this context has no train split (the runner's HarnessContext does)")

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

    def configure(self, method_args: dict):
        """Parse and check this method's arguments (``--preset``, ``--method-arg``) and return its resolved
        configuration; a bad one raises ValueError or TypeError, whose first line the CLI prints. The runner calls
        it before any model loads or any file is written (a method that does not train takes no arguments: the
        runner refuses them before asking). It runs ``method_config`` on a context that holds only the arguments
        (``config.method``, ``config.method_args``, ``config.seed`` = 0), so the check is the very resolution
        ``train`` starts with."""
        cfg = SimpleNamespace(method=self.name, method_args=dict(method_args), seed=0)
        return self.method_config(RunContext(config=cfg, task=None, engine=None, run_dir=None))

    def method_config(self, ctx: RunContext):
        """This method's configuration, resolved from ``ctx.config`` (``method``, ``method_args``, ``seed``) and
        nothing else of ``ctx``: ``train`` calls it first, ``configure`` to check the arguments (e.g.
        ``scorebench.training.resolve_method_config``, whose dataclasses range-check in ``__post_init__``). The
        default: the arguments as given."""
        return dict(ctx.config.method_args or {})

    def rollout(self, engine, task, examples: list[dict], params, turns: int, on_episodes=None,
                chunk_size: int = 64, progress: bool = True) -> list:
        """How this method answers at evaluation: the shared protocol by default. An inference-time method
        (best-of-n, a vote over second attempts) overrides this; ``task.extract`` gives it the graded answer."""
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
