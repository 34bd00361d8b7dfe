"""The engine interface: generate completions for a batch of conversations.

Every method and every evaluation goes through ``Engine.generate``; only the engine differs between CPU
(transformers) and GPU (vLLM). Conversations are lists of ``{"role", "content"}`` messages rendered by the
tokenizer's chat template with a generation prompt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

Message = dict  # {"role": "user"|"assistant"|"system", "content": str}


@dataclass
class SamplingParams:
    temperature: float = 1.0
    """Sampling temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 512
    """Upper bound on generated tokens per completion."""
    n: int = 1
    """Number of samples per conversation."""
    seed: int = 0
    """Seed for the sampler; equal seeds give equal samples on the same engine and batch."""

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass
class Completion:
    text: str
    """Decoded completion without special tokens."""
    token_ids: list[int] = field(default_factory=list)
    """Generated token ids, including the end-of-turn token when one was produced."""
    prompt_ids: list[int] = field(default_factory=list)
    """Token ids of the rendered prompt the completion continues."""
    finish_reason: str = "stop"
    """"stop" (end-of-turn token) or "length" (hit max_new_tokens)."""
    logprobs: list[float] | None = None
    """log-probability of each generated token under the sampler's temperature softmax (None when greedy or
    when the engine does not report them): lets a trainer check it trains on the distribution it sampled."""


def render_ids(tokenizer, messages: list[Message]) -> list[int]:
    """Token ids of ``messages`` with the generation prompt: the one definition of what a model is prompted with
    (every engine renders with it, and training renders an unsampled turn with it, as a test-time turn would be)."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if hasattr(out, "keys"):  # some tokenizer versions return an encoding even with return_dict=False
        out = out["input_ids"]
    return [int(t) for t in out]


class Engine(ABC):
    name: str = "engine"
    tokenizer = None

    @abstractmethod
    def generate(self, conversations: list[list[Message]], params: SamplingParams,
                 desc: str | None = None) -> list[list[Completion]]:
        """Return, for each conversation, ``params.n`` completions of the next assistant turn."""

    def render(self, conversation: list[Message]) -> list[int]:
        """Token ids of the conversation with the generation prompt, as the model sees it."""
        return render_ids(self.tokenizer, conversation)

    def describe(self) -> dict:
        return {"engine": self.name}

    def trainable_model(self):
        """(model, tokenizer) when this engine samples from an HF model object in this process that a trainer may
        update in place; None when it holds its own copy of the weights (then ``sync_weights`` pushes them)."""
        return None

    def use_compute_dtype(self, dtype: str) -> str:
        """Compute in ``dtype`` ("float32" or "bfloat16") from now on, where the engine has a compute dtype of its
        own; returns the dtype it computes in. The RL loop calls it so that rollouts are sampled in the precision
        the trainer computes their log-probabilities in (one precision: the loss is on-policy in fact, not only in
        name). Engines that decide their own arithmetic (vLLM) keep it and say which."""
        return getattr(self, "compute_dtype", dtype)

    def sync_weights(self, model) -> None:
        """The policy ``model``'s weights changed: sample from them from now on (a no-op for engines that read
        the live model)."""
