"""Episodes -> token sequences with per-position loss weights and KL coefficients.

Why by position: the embedded model's pad, eos and end-of-turn tokens are one id (<|im_end|>), so a mask built
from token ids would drop the end-of-turn token the model must learn to emit. Every mask here is built from the
positions where each piece was appended.

Layout for an episode with turns (u1, a1), (u2, a2), ...: the chat template's rendering of u1 with the generation
prompt, then a1's tokens (``response_ids`` when the turn was sampled on-policy, else the tokenized text plus the
end-of-turn token), then the template's glue (the rest of a1's end-of-turn line, u2, the assistant header), a2...
``weights[t]`` is the loss weight for predicting ``input_ids[t]`` from ``input_ids[:t]``.
"""
from __future__ import annotations

from dataclasses import dataclass

_SENTINEL = "\u2063SCOREBENCH_SENTINEL\u2063"


@dataclass
class Sequence:
    input_ids: list[int]
    """Token ids of the whole conversation."""
    weights: list[float]
    """Per-position loss weight on log pi(input_ids[t] | prefix): 1.0 for SFT, the advantage for PG, 0 = no loss."""
    kl_weights: list[float]
    """Per-position coefficient of KL(pi || ref) at the distribution that predicts input_ids[t]."""

    def __post_init__(self):
        if not (len(self.input_ids) == len(self.weights) == len(self.kl_weights)):
            raise ValueError("Sequence: input_ids, weights and kl_weights must have equal length")

    def to_json(self) -> dict:
        return {"input_ids": self.input_ids, "weights": self.weights, "kl_weights": self.kl_weights}

    @classmethod
    def from_json(cls, d: dict) -> "Sequence":
        return cls(d["input_ids"], d["weights"], d["kl_weights"])


def _render(tokenizer, messages, gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def end_of_turn(tokenizer) -> tuple[int, str]:
    """(id, text) of the token the chat template closes an assistant turn with (<|im_end|> for SmolLM2)."""
    cached = getattr(tokenizer, "_scorebench_eot", None)
    if cached:
        return cached
    text = _render(tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}], False)
    tail = text[text.rindex(_SENTINEL) + len(_SENTINEL):]
    ids = _encode(tokenizer, tail) if tail else []
    if ids and ids[0] in tokenizer.all_special_ids:
        eot = (ids[0], tokenizer.decode([ids[0]]))
    else:
        eot = (tokenizer.eos_token_id, tokenizer.eos_token)
    try:
        tokenizer._scorebench_eot = eot
    except AttributeError:
        pass
    return eot


def episode_to_sequence(tokenizer, episode, turn_weights: list[float],
                        kl_weights: list[float] | None = None) -> Sequence:
    """The episode as one sequence; ``turn_weights[k]`` / ``kl_weights[k]`` cover every token of the k-th graded
    attempt's response (including its end-of-turn token); prompts, glue and ungraded turns get 0."""
    graded = [i for i, t in enumerate(episode.turns) if t.graded]
    if len(turn_weights) != len(graded):
        raise ValueError(f"episode {episode.id}: {len(turn_weights)} turn weights for {len(graded)} graded attempts")
    kl_weights = list(kl_weights) if kl_weights is not None else [0.0] * len(graded)
    if len(kl_weights) != len(graded):
        raise ValueError(f"episode {episode.id}: {len(kl_weights)} KL weights for {len(graded)} graded attempts")
    w_of = {i: (float(turn_weights[g]), float(kl_weights[g])) for g, i in enumerate(graded)}
    eot_id, eot_text = end_of_turn(tokenizer)
    ids: list[int] = []
    ws: list[float] = []
    ks: list[float] = []
    history: list[dict] = []
    for i, turn in enumerate(episode.turns):
        user = {"role": "user", "content": turn.prompt}
        if i == 0:
            glue = list(turn.prompt_ids) if turn.prompt_ids else _encode(tokenizer, _render(tokenizer, [user], True))
        else:
            # Everything the template writes after the previous response's end-of-turn token, up to and including
            # this turn's assistant header. The previous response is a sentinel so its text cannot confuse the cut.
            msgs = history[:-1] + [{"role": "assistant", "content": _SENTINEL}, user]
            text = _render(tokenizer, msgs, True)
            tail = text[text.rindex(_SENTINEL) + len(_SENTINEL):]
            if not tail.startswith(eot_text):
                raise ValueError(f"chat template does not close an assistant turn with {eot_text!r}")
            glue = _encode(tokenizer, tail[len(eot_text):])
        ids += glue
        ws += [0.0] * len(glue)
        ks += [0.0] * len(glue)
        if turn.response_ids is not None:
            resp = list(turn.response_ids)
        else:
            resp = _encode(tokenizer, turn.response) + [eot_id]
        w, k = w_of.get(i, (0.0, 0.0))
        ids += resp
        ws += [w] * len(resp)
        ks += [k] * len(resp)
        history += [user, {"role": "assistant", "content": turn.response}]
    return Sequence(ids, ws, ks)
