"""The records every layer passes around: a conversation's messages, how to sample, what the engine returns
(``Completion``), and what the protocol keeps (``Turn``, ``Episode``; one line of ``episodes.jsonl`` each)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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


@dataclass
class Turn:
    prompt: str
    """The user message that asked for this attempt (the problem for turn 1, the instruction after)."""
    response: str
    """The model's attempt."""
    reward: float | None = None
    """r(y, y*) from the task's grader, in [0, 1]; None for ungraded turns (e.g. Self-Refine feedback)."""
    graded: bool = True
    """False for auxiliary turns that are not attempts (Self-Refine's feedback)."""
    given: bool = False
    """True when the attempt was supplied by the task (MBPP-R's wrong first attempt), not generated."""
    finish_reason: str = "stop"
    n_tokens: int = 0
    info: dict = field(default_factory=dict)
    """Grader details, e.g. the extracted answer."""
    prompt_ids: list[int] | None = None
    response_ids: list[int] | None = None
    """Token ids, kept in memory for training; not written to episodes.jsonl."""
    logprobs: list[float] | None = None
    """The sampler's log-probability of each response id (in memory only, like the ids)."""


@dataclass
class Episode:
    id: str
    """The example's id (plus ``#k`` when several samples are drawn per problem)."""
    turns: list[Turn]
    meta: dict = field(default_factory=dict)
    """Task metadata for breakdowns (subject, level, difficulty)."""

    @property
    def attempts(self) -> list[Turn]:
        return [t for t in self.turns if t.graded]

    @property
    def rewards(self) -> list[float]:
        return [t.reward for t in self.attempts]

    def messages(self, upto: int | None = None) -> list[dict]:
        """The conversation through ``upto`` turns (all by default), as chat messages."""
        msgs: list[dict] = []
        for t in self.turns[:upto]:
            msgs += [{"role": "user", "content": t.prompt}, {"role": "assistant", "content": t.response}]
        return msgs

    def to_json(self) -> dict:
        d = asdict(self)
        for t in d["turns"]:
            t.pop("prompt_ids", None)
            t.pop("response_ids", None)
            t.pop("logprobs", None)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Episode":
        return cls(id=d["id"], turns=[Turn(**t) for t in d["turns"]], meta=d.get("meta", {}))
