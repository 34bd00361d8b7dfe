"""The self-correction protocol: one conversation per problem, K attempts, a fixed instruction between them.

    user: x  ->  assistant: y1  ->  user: p  ->  assistant: y2  -> ...

Everything that prompts a model — evaluation, every baseline's data generation, SCoRe's rollouts — builds its
conversations here, so a method cannot quietly evaluate under a different prompt than the one it trained on.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

from tqdm.auto import tqdm

from .engine import Engine
from .seeding import derive_seed
from .types import Completion, Episode, SamplingParams, Turn

# The paper's MATH instruction (PAPER.md), verbatim. The label "Self-correction instruction." that precedes it
# in the paper's appendix is a heading, not part of the prompt.
SELF_CORRECTION_INSTRUCTION = (
    "There might be an error in the solution above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution."
)
# The code variant: the same sentence about code, plus a reminder of the output format the grader reads.
CODE_SELF_CORRECTION_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)


@dataclass
class ProtocolConfig:
    turns: int = 2
    """Number of graded attempts K (K >= 1)."""
    instruction: str | None = None
    """Self-correction instruction between attempts; None uses the task's (MATH or code variant)."""
    feedback_prompt: str | None = None
    """If set, before each correction the model is first asked this and answers ungraded (Self-Refine)."""
    refine_instruction: str | None = None
    """With feedback_prompt: the instruction that asks for the refined attempt after the feedback."""

    def __post_init__(self):
        if self.turns < 1:
            raise ValueError(f"turns must be >= 1, got {self.turns}")


def run_protocol(engine: Engine, task, examples: list[dict], params: SamplingParams,
                 protocol: ProtocolConfig | None = None, samples_per_problem: int = 1,
                 on_episodes: Callable[[list[Episode]], None] | None = None,
                 chunk_size: int = 64, progress: bool = True, keep_ids: bool = False,
                 samples_per_attempt: int = 1) -> list[Episode]:
    """Roll out the protocol on ``examples``; return one Episode per (example, sample).

    Turn 1 draws ``samples_per_problem`` samples per problem; each later turn continues its own conversation
    with one sample. ``samples_per_attempt`` m > 1 (training only) continues each first attempt m times: the
    episodes of a problem are then its k first attempts × m continuations, first-attempt-major, each a whole
    conversation sharing its turn 1 with its m − 1 siblings (ids ``id#(k·m + j)``). Examples are processed in
    chunks; ``on_episodes`` receives each finished chunk so a run directory can persist it before the next starts
    (a killed run keeps what it finished).
    """
    protocol = protocol or ProtocolConfig()
    instruction = protocol.instruction or task.correction_instruction
    episodes: list[Episode] = []
    chunks = [examples[i:i + chunk_size] for i in range(0, len(examples), chunk_size)]
    bar = tqdm(total=len(examples), desc=f"{task.name}: episodes", disable=not progress, unit="problem")
    if samples_per_attempt < 1 or (samples_per_attempt > 1 and protocol.turns < 2):
        raise ValueError("samples_per_attempt must be >= 1, and > 1 only with two or more turns")
    for chunk in chunks:
        eps = _rollout_chunk(engine, task, chunk, params, protocol, instruction, samples_per_problem, keep_ids,
                             samples_per_attempt)
        if on_episodes:
            on_episodes(eps)
        episodes += eps
        bar.update(len(chunk))
    bar.close()
    return episodes


def _rollout_chunk(engine, task, chunk, params, protocol, instruction, n, keep_ids, m=1) -> list[Episode]:
    rows: list[tuple[dict, Episode]] = []
    # Turn 1: either the task supplies it (MBPP-R) or the model samples n attempts per problem.
    given = [ex for ex in chunk if ex.get("given_attempt") is not None]
    fresh = [ex for ex in chunk if ex.get("given_attempt") is None]
    for ex in given:
        for k in range(n):
            t = Turn(prompt=task.prompt(ex), response=ex["given_attempt"], given=True)
            rows.append((ex, Episode(id=_eid(ex, k, n), turns=[t], meta=task.meta(ex))))
    # Every generate call draws from its own streams: turn t of the chunk that starts with example x gets
    # derive_seed(seed, "turn", t, x); the engine then gives each (conversation, sample) its own stream of uniforms.
    stream = lambda t: derive_seed(params.seed, "turn", t, str(chunk[0]["id"]))  # noqa: E731
    if fresh:
        convs = [[{"role": "user", "content": task.prompt(ex)}] for ex in fresh]
        outs = engine.generate(convs, _with(params, n=n, seed=stream(0)), desc="turn 1")
        for ex, conv, comps in zip(fresh, convs, outs):
            for k, c in enumerate(comps):
                t = _turn(conv[-1]["content"], c, keep_ids)
                rows.append((ex, Episode(id=_eid(ex, k, n), turns=[t], meta=task.meta(ex))))
    pos = {id(ex): i for i, ex in enumerate(chunk)}
    rows.sort(key=lambda r: pos[id(r[0])])  # chunk order (stable within a problem's samples)
    _grade(task, rows, turn_index=0)
    if m > 1:  # each first attempt continued m times: copies of the conversation so far, new ids
        rows = [(ex, Episode(id=_eid(ex, int(ep.id.rsplit(SAMPLE_SEP, 1)[1]) * m + j if n > 1 else j, n * m),
                             turns=[copy.deepcopy(t) for t in ep.turns], meta=dict(ep.meta)))
                for ex, ep in rows for j in range(m)]
    for t in range(1, protocol.turns):
        if protocol.feedback_prompt:
            _extend(engine, rows, protocol.feedback_prompt, _with(params, seed=stream(f"{t}-feedback")), keep_ids,
                    graded=False, desc="feedback")
            _extend(engine, rows, protocol.refine_instruction or instruction, _with(params, seed=stream(t)),
                    keep_ids, desc="refine")
        else:
            _extend(engine, rows, instruction, _with(params, seed=stream(t)), keep_ids, desc="correction")
        _grade(task, rows, turn_index=-1)
    return [ep for _, ep in rows]


def _extend(engine, rows, user_msg, params, keep_ids, graded=True, desc=None):
    convs = [ep.messages() + [{"role": "user", "content": user_msg}] for _, ep in rows]
    outs = engine.generate(convs, _with(params, n=1), desc=desc)
    for (_, ep), comps in zip(rows, outs):
        ep.turns.append(_turn(user_msg, comps[0], keep_ids, graded=graded))


def _grade(task, rows, turn_index):
    turns = [ep.turns[turn_index] for _, ep in rows]
    results = grade(task, [ex for ex, _ in rows], [t.response for t in turns],
                    [t.finish_reason != "length" for t in turns])
    for (_, ep), res in zip(rows, results):
        t = ep.turns[turn_index]
        t.reward = float(res["reward"])
        t.info = {k: v for k, v in res.items() if k != "reward"}


def grade(task, examples: list[dict], responses: list[str], finished: list[bool]) -> list[dict]:
    """The one grading rule of training rewards, metrics and tables: ``task.evaluate_batch``, then, under strict
    grading (``task.grading == "strict"``), an attempt that did not finish (stopped by the token cap) is wrong.
    Its text-only verdict stays on the record as ``lax_correct`` (so how many rewards the rule flips is counted
    from episodes). A task without a ``grading`` attribute is graded on its text ("lax")."""
    if not len(examples) == len(responses) == len(finished):
        raise ValueError(f"{task.name}: {len(examples)} examples, {len(responses)} responses, "
                         f"{len(finished)} finished flags")
    out = task.evaluate_batch(examples, responses)
    if getattr(task, "grading", "lax") == "strict":
        for res, fin in zip(out, finished):
            if not fin:
                res["cut"], res["lax_correct"] = True, bool(res["correct"])
                res["correct"], res["reward"] = False, 0.0
    return out


def _turn(prompt: str, c: Completion, keep_ids: bool, graded: bool = True) -> Turn:
    return Turn(prompt=prompt, response=c.text, graded=graded, finish_reason=c.finish_reason,
                n_tokens=len(c.token_ids), prompt_ids=list(c.prompt_ids) if keep_ids else None,
                response_ids=list(c.token_ids) if keep_ids else None,
                logprobs=list(c.logprobs) if keep_ids and c.logprobs is not None else None)


def _with(params: SamplingParams, **kw) -> SamplingParams:
    d = asdict(params)
    d.update(kw)
    return SamplingParams(**d)


SAMPLE_SEP = "#"


def _eid(ex: dict, k: int, n: int) -> str:
    return str(ex["id"]) if n == 1 else f"{ex['id']}{SAMPLE_SEP}{k}"


def problem_id(episode_id: str) -> str:
    """The problem an episode id belongs to (``id`` or ``id#k`` for the k-th sample): the one place that parses it."""
    return episode_id.rsplit(SAMPLE_SEP, 1)[0]
