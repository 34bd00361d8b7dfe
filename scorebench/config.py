"""``RunConfig``: every choice of a run, what ``config.json`` records of it, and the key that names its directory."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from .api.registry import METHODS
from .training.config import load_preset


@dataclass
class RunConfig:
    method: str = "base"
    """Registered method name (``scorebench methods``)."""
    task: str = "arith"
    """Registered task name (``scorebench tasks``)."""
    train_task: str | None = None
    """Task whose train split trained methods use; None = ``task`` (the paper trains on MBPP for HumanEval)."""
    model: str | None = None
    """HF model id or local directory; None = the embedded SmolLM2-135M-Instruct."""
    engine: str = "hf"
    """Sampling engine: ``hf`` (CPU/GPU, transformers) or ``vllm`` (GPU only)."""
    dtype: str = "float32"
    """Dtype the model's weights are loaded in: float32, bfloat16 or float16."""
    limit: int | None = None
    """Evaluate on the first N test problems; None = all. Bounds evaluation only, not training (the line printed
    before training says how big it is)."""
    turns: int = 2
    """Attempts per problem (K >= 1); the paper uses 2."""
    temperature: float = 0.0
    """Evaluation sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Evaluation nucleus mass."""
    max_new_tokens: int | None = None
    """Tokens per attempt; None = the task's default."""
    seed: int = 0
    """Seed for sampling, bootstrap and training data order."""
    batch_size: int = 32
    """Conversations per engine batch."""
    task_args: dict = field(default_factory=dict)
    """Keyword arguments for the task constructor (e.g. arith difficulty)."""
    method_args: dict = field(default_factory=dict)
    """Method hyperparameters (see each method's config)."""
    device: str = "auto"
    """Where to compute: auto (CUDA when available), cpu or cuda. config.json records where the weights were."""
    compute_dtype: str = "auto"
    """Dtype the HF engine's fast path computes evaluation in: auto (the weights' dtype: fp32 by default, exact and
    the same on every CPU and thread count), float32 or bfloat16 (faster on CPUs with AMX; its greedy episodes
    change with the thread count). Training rollouts compute in the trainer's dtype whatever this says."""
    rules: int = 2
    """Version of the rules that decide results without a flag of their own (not a CLI flag): 1 = runs before
    strict grading and exact CPU evaluation (cut attempts graded on their text, bf16 CPU compute by default);
    2 = strict grading and fp32 CPU evaluation by default. Part of the key, so a run of other rules is never
    reused as this config's."""

    def record(self) -> dict:
        """The config as ``config.json`` records it and the key hashes it: every field, except one added after
        runs were shipped while it holds the value those runs used (``LATER_FIELDS``) — so they keep their keys
        and are still found and reused."""
        d = asdict(self)
        for k, v in LATER_FIELDS.items():
            if d.get(k) == v:
                del d[k]
        return d

    @classmethod
    def from_record(cls, d: dict) -> "RunConfig":
        """The config a ``config.json`` recorded (``record``'s inverse): a field left out of an older record held
        the value of ``LATER_FIELDS`` then, not today's default (a run without ``rules`` ran under rules 1)."""
        return cls(**{**LATER_FIELDS, **d})

    def resolved(self) -> dict:
        """The config plus, for a method that trains, the content of its preset file (``method_args["preset"]``,
        default cpu-small) — editing a preset changes the results, so it must change the key too."""
        d = self.record()
        if METHODS.get(self.method).trains:
            d["preset_content"] = load_preset((self.method_args or {}).get("preset", "cpu-small"))
        return d

    def key(self) -> str:
        """A short hash of everything that changes results — names the default run directory."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()[:8]


LATER_FIELDS = {"compute_dtype": "auto", "device": "auto", "rules": 1}
"""Fields added after runs were recorded, with the value those runs used: left out of the record at that value."""

DTYPES = ("float32", "bfloat16", "float16")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
