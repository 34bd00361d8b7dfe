"""Episodes -> token sequences with per-position loss weights and KL coefficients.

The rule (one definition, used by every method): the training tokens of an attempt are exactly the prompt ids
the engine generated it from followed by the ids it generated (``Turn.prompt_ids`` + ``Turn.response_ids``).
A turn whose ids are unknown (a hand-made or assembled trace, e.g. Pair-SFT's second attempt, which was
sampled in another context) gets the ids the chat template renders at test time for the conversation so far,
and its text tokenized plus the end-of-turn token.

Why not one glued sequence per episode: the protocol renders each turn's prompt from the conversation's *text*,
so when turn 1 stopped at ``max_new_tokens`` (no end-of-turn id) or its text re-tokenizes differently, turn 2's
prompt is not turn 1's prompt + response ids. Gluing would train on a context nobody sampled from. So consecutive
turns share one sequence only when the later prompt extends the earlier prompt + response token for token;
otherwise the later turn starts a new sequence. Pieces that carry no loss and no KL are dropped. The pieces of
one episode share ``group`` so that a per-episode loss normalization still counts the episode once.

Why by position: the embedded model's pad, eos and end-of-turn tokens are one id (<|im_end|>), so a mask built
from token ids would drop the end-of-turn token the model must learn to emit. Every mask here is built from the
positions where each piece was appended. ``weights[t]`` is the loss weight for predicting ``input_ids[t]`` from
``input_ids[:t]``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engines.base import render_ids

_SENTINEL = "\u2063SCOREBENCH_SENTINEL\u2063"


@dataclass
class Sequence:
    input_ids: list[int]
    """Token ids of the whole (piece of the) conversation."""
    weights: list[float]
    """Per-position loss weight on log pi(input_ids[t] | prefix): 1.0 for SFT, the advantage for PG, 0 = no loss."""
    kl_weights: list[float]
    """Per-position coefficient of KL(pi || ref) at the distribution that predicts input_ids[t]."""
    group: str | None = None
    """The episode this sequence comes from (an episode split in pieces counts once per-episode)."""

    def __post_init__(self):
        if not (len(self.input_ids) == len(self.weights) == len(self.kl_weights)):
            raise ValueError("Sequence: input_ids, weights and kl_weights must have equal length")

    def to_json(self) -> dict:
        d = {"input_ids": self.input_ids, "weights": self.weights, "kl_weights": self.kl_weights}
        if self.group is not None:
            d["group"] = self.group
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Sequence":
        return cls(d["input_ids"], d["weights"], d["kl_weights"], d.get("group"))


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def end_of_turn(tokenizer) -> int:
    """Id of the token the chat template closes an assistant turn with (<|im_end|> for SmolLM2); the eos token
    when the template closes turns with ordinary text."""
    cached = getattr(tokenizer, "_scorebench_eot", None)
    if cached is not None:
        return cached
    msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(msgs, add_generation_prompt=False, tokenize=False)
    tail = text[text.rindex(_SENTINEL) + len(_SENTINEL):]
    ids = _encode(tokenizer, tail) if tail else []
    # The first token the template writes after an assistant turn ends it, when it is an added (control) token.
    # Not "the eos token" nor "a special token": transformers 5.17's conversion of the embedded GGUF makes
    # <|im_start|> the eos token and leaves <|im_end|> out of the special tokens (tests/unit/training/test_trains_on_what_was_sampled.py runs
    # under the lowest supported transformers in CI for this reason).
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    eot = ids[0] if ids and ids[0] in added else tokenizer.eos_token_id
    try:
        tokenizer._scorebench_eot = eot
    except AttributeError:
        pass
    return eot


def turn_tokens(tokenizer, episode, i: int) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of turn ``i``: as sampled when known, else as rendered at test time."""
    turn = episode.turns[i]
    if turn.prompt_ids is not None:
        prompt = list(turn.prompt_ids)
    else:
        prompt = render_ids(tokenizer, episode.messages(i) + [{"role": "user", "content": turn.prompt}])
    if turn.response_ids is not None:
        resp = list(turn.response_ids)
    else:
        resp = _encode(tokenizer, turn.response) + [end_of_turn(tokenizer)]
    return prompt, resp


def episode_to_sequences(tokenizer, episode, turn_weights: list[float],
                         kl_weights: list[float] | None = None, drop_empty: bool = True) -> list[Sequence]:
    """The episode as the fewest sequences that are each exactly what was sampled (see the module docstring);
    ``turn_weights[g]`` / ``kl_weights[g]`` cover every token of the g-th graded attempt's response (including
    its end-of-turn token when it has one); prompts and ungraded turns get 0."""
    graded = [i for i, t in enumerate(episode.turns) if t.graded]
    if len(turn_weights) != len(graded):
        raise ValueError(f"episode {episode.id}: {len(turn_weights)} turn weights for {len(graded)} graded attempts")
    kl_weights = list(kl_weights) if kl_weights is not None else [0.0] * len(graded)
    if len(kl_weights) != len(graded):
        raise ValueError(f"episode {episode.id}: {len(kl_weights)} KL weights for {len(graded)} graded attempts")
    w_of = {i: (float(turn_weights[g]), float(kl_weights[g])) for g, i in enumerate(graded)}
    pieces: list[Sequence] = []
    ids: list[int] = []
    ws: list[float] = []
    ks: list[float] = []
    for i in range(len(episode.turns)):
        prompt, resp = turn_tokens(tokenizer, episode, i)
        if ids and prompt[:len(ids)] == ids:
            prompt = prompt[len(ids):]  # this turn's context extends the sequence so far: continue it
        else:
            if ids:
                pieces.append(Sequence(ids, ws, ks, episode.id))
            ids, ws, ks = [], [], []
        w, k = w_of.get(i, (0.0, 0.0))
        ids = ids + prompt + resp
        ws = ws + [0.0] * len(prompt) + [w] * len(resp)
        ks = ks + [0.0] * len(prompt) + [k] * len(resp)
    pieces.append(Sequence(ids, ws, ks, episode.id))
    if not drop_empty:
        return pieces
    return [s for s in pieces if any(s.weights) or any(s.kl_weights)]


def episode_to_sequence(tokenizer, episode, turn_weights: list[float],
                        kl_weights: list[float] | None = None) -> Sequence:
    """The episode as one sequence; an error when what was sampled does not form one (use
    ``episode_to_sequences``)."""
    out = episode_to_sequences(tokenizer, episode, turn_weights, kl_weights, drop_empty=False)
    if len(out) != 1:
        raise ValueError(f"episode {episode.id}: its turns were sampled from {len(out)} contexts that do not "
                         "extend one another; use episode_to_sequences")
    return out[0]
