"""The engine interface: generate completions for a batch of conversations.

Every method and every evaluation goes through ``Engine.generate``; only the engine differs between CPU
(transformers) and GPU (vLLM). Conversations are lists of ``{"role", "content"}`` messages rendered by the
tokenizer's chat template with a generation prompt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from .types import Completion, Message, SamplingParams


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

    def release_weights(self) -> None:
        """Free what the engine holds only to sample (a snapshot of the weights) until it samples again; the RL
        loop calls it before each trainer step, whose peak memory it lowers. A no-op by default."""

    def sync_weights(self, model) -> None:
        """The policy ``model``'s weights changed: sample from them from now on (a no-op for engines that read
        the live model)."""
