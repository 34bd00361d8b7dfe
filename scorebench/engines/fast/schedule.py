"""Schedules of the fast engine: which sample decodes in which batch row, and when.

A queue of waiting samples (``Waiting``: longest prompt first, each prompt prefilled once for its ``n``
samples) feeds one of two schedules (``decode=``): ``dynamic`` (the CPU default) shrinks the batch and the
attended context to what is live; ``static`` decodes fixed shapes, and ``graph`` (the CUDA default) replays that
fixed-shape step as one CUDA graph (``static.py``). Both draw token t of sample k of conversation i from the
uniform of (``derive_seed(seed, i, k)``, t), so the draw does not depend on which slot a sample lands in.
"""
from __future__ import annotations

import itertools
import time

import torch

from ...seeding import derive_seed
from ..base import SamplingParams
from ..sampling import sample
from .static import StaticBatch

PREFILL_PROMPTS = 16
"""At most this many waiting prompts are prefilled together (their samples then wait in ``prefix``)."""
PREFILL_TOKENS = 2048
"""... and at most this many prompt tokens."""

DECODE_MODES = ("auto", "dynamic", "static", "graph")


def decode_mode(name: str, model) -> str:
    """``auto``: ``graph`` on CUDA, ``dynamic`` elsewhere (see ``run``); ``graph`` needs CUDA."""
    if name not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {name!r}")
    on_gpu = next(model.parameters()).device.type == "cuda"
    if name == "auto":
        return "graph" if on_gpu else "dynamic"
    if name == "graph" and not on_gpu:
        raise ValueError("decode='graph' captures CUDA graphs: the model must be on a CUDA device")
    return name


@torch.no_grad()
def run(runner, prompts: list[list[int]], params: SamplingParams, eos_ids: list[int], slots: int,
        on_done=None) -> list[list[list[int]]]:
    """Generated token ids per (prompt, sample), each cut after its first end-of-turn token; the drawn tokens'
    log-probabilities in ``runner.logprobs`` (None when greedy)."""
    t0 = time.perf_counter()
    runner.maybe_refresh()
    runner.start_call()
    n = params.n
    out: list[list[list[int] | None]] = [[None] * n for _ in prompts]
    runner.logprobs = [[None] * n for _ in prompts]
    if not prompts:
        return out  # type: ignore[return-value]

    def finish(job):  # job = [prompt index, k, tokens, log-probabilities or None]
        out[job[0]][job[1]], runner.logprobs[job[0]][job[1]] = job[2], job[3]
        if on_done:
            on_done()

    waiting = Waiting(runner, prompts, params)
    S = min(slots, len(prompts) * n)
    schedule = _run_dynamic if runner.decode_mode == "dynamic" else _run_static
    steps, decode_tokens, ttft = schedule(runner, prompts, params, set(eos_ids), S, waiting, finish, t0)
    wall = time.perf_counter() - t0
    runner.stats = {"ttft_s": ttft, "decode_steps": steps, "decode_tokens": decode_tokens, "wall_s": wall,
                  "prefill_s": waiting.prefill_s, "decode_s": wall - waiting.prefill_s, "slots": S,
                  "decode": runner.decode_mode, "reused_prompt_tokens": runner.reused_tokens,
                  "prompt_tokens": sum(len(p) for p in prompts)}
    runner.end_call()
    return out  # type: ignore[return-value]


def draw(runner, logits, params: SamplingParams, keys, counters):
    """(tokens, log-probabilities or None) for rows of ``logits``: argmax when greedy, else the exact draw of
    ``sampling.sample`` with each row's (key, counter) uniform."""
    if params.temperature == 0:
        return logits.argmax(-1), None
    return sample(logits, params.temperature, params.top_p if params.top_p < 1 else None, keys, counters,
                  sort_nucleus=runner.decode_mode != "dynamic")


def _first_tokens(runner, taken, params: SamplingParams):
    """First tokens of the samples ``taken`` from the queue, drawn together from their prompts' prefill
    logits (counter 0 of each sample's stream): (tokens, log-probabilities or None, keys)."""
    keys = [_sample_key(params.seed, i, k) for i, k, _, _ in taken]
    logits = torch.stack([t[3] for t in taken])
    tok, lp = draw(runner, logits, params, torch.tensor(keys, device=runner.device),
                         torch.zeros(len(taken), dtype=torch.long, device=runner.device))
    return tok.tolist(), None if lp is None else lp.tolist(), keys


def _run_dynamic(runner, prompts, params, eos, S, waiting, finish, t0):
    """The CPU schedule: rows [0, nb) are live; a finished row is refilled at once from the queue or, when
    nothing waits, replaced by the last live row so the batch shrinks (a CPU pays for every row it computes,
    and each step attends only up to the longest live context)."""
    max_new = params.max_new_tokens
    T = max(len(p) for p in prompts) + max_new
    kc, vc = runner.kv_cache(S, T)
    tok, pos, key, ctr = (torch.zeros(S, dtype=torch.long, device=runner.device) for _ in range(4))
    slot_job: list = [None] * S
    ttft = None
    steps = decode_tokens = nb = 0

    def start(slot) -> bool:
        """Put the next waiting sample into ``slot``; False when the queue is empty."""
        nonlocal ttft
        while waiting:
            taken = waiting.take()
            (first,), lps, (k,) = _first_tokens(runner, [taken], params)
            ttft = ttft or time.perf_counter() - t0
            job = [taken[0], taken[1], [first], None if lps is None else lps]
            if first in eos or max_new == 1:
                finish(job)
                continue
            L = len(prompts[taken[0]])
            for li, (kk, vv) in enumerate(taken[2]):
                kc[li][slot, :, :, :L] = kk.transpose(-1, -2)
                vc[li][slot, :, :L] = vv
            tok[slot], pos[slot], key[slot], ctr[slot] = first, L, k, 1
            slot_job[slot] = job
            return True
        return False

    def move(src, dst):
        for li in range(len(kc)):
            kc[li][dst] = kc[li][src]
            vc[li][dst] = vc[li][src]
        for t in (tok, pos, key, ctr):
            t[dst] = t[src]
        slot_job[dst] = slot_job[src]

    while nb < S and start(nb):
        nb += 1
    while nb:
        tmax = int(pos[:nb].max()) + 1
        logits = runner.decode(tok[:nb], pos[:nb], kc, vc, nb, tmax)
        nxt, nlp = draw(runner, logits, params, key[:nb], ctr[:nb])
        steps += 1
        decode_tokens += nb
        tok[:nb] = nxt
        pos[:nb] += 1
        ctr[:nb] += 1
        nl = nxt.tolist()
        nlps = nlp.tolist() if nlp is not None else None
        r = 0
        while r < nb:
            job = slot_job[r]
            job[2].append(nl[r])
            if nlps is not None:
                job[3].append(nlps[r])
            if nl[r] in eos or len(job[2]) >= max_new:
                if runner.keep_kv_bytes:  # positions [0, pos) hold the prompt and all drawn tokens but the last
                    runner.keep(prompts[job[0]] + job[2][:-1], kc, vc, r)
                finish(job)
                if not start(r):  # nothing waits: move the last active row here and shrink the batch
                    nb -= 1
                    if r != nb:
                        move(nb, r)
                        nl[r] = nl[nb]
                        if nlps is not None:
                            nlps[r] = nlps[nb]
                        continue  # examine the moved row (it has already received its token)
            r += 1
    return steps, decode_tokens, ttft


def _run_static(runner, prompts, params, eos, S, waiting, finish, t0):
    """The GPU schedule: every step decodes all S slots over the whole cache (fixed shapes, so the step can
    be one CUDA graph replay); finished slots idle until the next refill, which places every waiting sample
    that fits in one go (first tokens drawn together, KV written with two indexed copies a layer)."""
    max_new = params.max_new_tokens
    T = -(-(max(len(p) for p in prompts) + max_new) // 128) * 128  # rounded, so graphs are reused across calls
    st = StaticBatch.get(runner, S, T, params)
    jobs: list = [None] * S
    free = list(range(S - 1, -1, -1))
    ttft = None
    steps = decode_tokens = 0

    def fill():
        nonlocal ttft
        while free and waiting:
            taken = [waiting.take() for _ in range(min(len(free), len(waiting)))]
            firsts, lps, keys = _first_tokens(runner, taken, params)
            ttft = ttft or time.perf_counter() - t0
            placed = []
            for j, (i, k, kv, _) in enumerate(taken):
                job = [i, k, [firsts[j]], None if lps is None else [lps[j]]]
                if firsts[j] in eos or max_new == 1:
                    finish(job)
                    continue
                slot = free.pop()
                jobs[slot] = job
                placed.append((slot, kv, firsts[j], keys[j]))
            if placed:
                st.place(placed)

    fill()
    while len(free) < S:
        vals = st.step().tolist()  # one device-to-host copy a step: [tokens, log-probabilities]
        steps += 1
        decode_tokens += S - len(free)
        for r, job in enumerate(jobs):
            if job is None:
                continue
            t = int(vals[0][r])
            job[2].append(t)
            if job[3] is not None:
                job[3].append(vals[1][r])
            if t in eos or len(job[2]) >= max_new:
                finish(job)
                jobs[r] = None
                free.append(r)
        fill()
    return steps, decode_tokens, ttft


class Waiting:
    """Samples waiting for a slot: longest prompt first (short ones fill in at the end), the ``n`` samples of a
    prompt adjacent. A prompt is prefilled when its first sample is taken, together with the next waiting
    prompts up to the runner's prompt and token budgets, and its KV and logits are kept until its last sample
    is taken (one prefill per conversation, shared by its samples)."""

    def __init__(self, runner, prompts: list[list[int]], params: SamplingParams):
        self.runner, self.prompts = runner, prompts
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        self.queue = [(i, k) for i in order for k in range(params.n)]
        self.next = 0
        self.prefix: dict[int, tuple] = {}  # prompt index -> (kv, logits) while some of its samples still wait
        self.left = {i: params.n for i in range(len(prompts))}
        self.prefill_s = 0.0

    def __len__(self) -> int:
        return len(self.queue) - self.next

    def take(self):
        """(prompt index, k, per-layer KV, last-token logits) of the next waiting sample."""
        i, k = self.queue[self.next]
        self.next += 1
        if i not in self.prefix:
            tp = time.perf_counter()
            chunk, toks = [], 0
            for j, _ in itertools.islice(self.queue, self.next - 1, None):
                if j in self.prefix or (chunk and j == chunk[-1]):
                    continue
                if chunk and (len(chunk) >= self.runner.prefill_prompts
                              or toks + len(self.prompts[j]) > self.runner.prefill_tokens):
                    break
                chunk.append(j)
                toks += len(self.prompts[j])
            for j, r in zip(chunk, self.runner.prefill_many([self.prompts[j] for j in chunk])):
                self.prefix[j] = r
            self.prefill_s += time.perf_counter() - tp
        kv, logits = self.prefix[i]
        self.left[i] -= 1
        if self.left[i] == 0:
            del self.prefix[i]
        return i, k, kv, logits


def _sample_key(seed: int, i: int, k: int) -> int:
    """The key of sample ``k`` of conversation ``i``: its stream of uniforms is ``uniforms(key, token index)``."""
    return derive_seed(seed, i, k)
