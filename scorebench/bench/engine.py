"""``scorebench bench``'s sampling rows: plain transformers ``generate`` (``HFEngine(fast=False)``) against our engine
on the same realistic two-turn prompts (arith problem, an attempt, the self-correction instruction), per batch size:
tokens/s end to end, decode-only tokens/s, time to first token, peak RSS."""
from __future__ import annotations

import resource
import time

from .. import get_task
from ..machine import proc_field
from ..engines.base import SamplingParams
from ..engines.hf import HFEngine
from ..protocol import SELF_CORRECTION_INSTRUCTION


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    kb = proc_field("/proc/self/status", "VmHWM:")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def two_turn_conversations(count: int) -> list[list[dict]]:
    """Turn-2 conversations as the protocol builds them: problem, a (plausible, often wrong) attempt, the
    self-correction instruction."""
    task = get_task("arith")
    exs = task.test()
    convs = []
    for i in range(count):
        ex = exs[i % len(exs)]
        ans = ex["answer"] + (i % 3) - 1
        attempt = (f"Let's solve this step by step. {ex['problem'].split('?')[0].strip()}. "
                   f"Working through each step carefully, the result is {ans}.\n\nThe final answer is {ans}.")
        convs.append([{"role": "user", "content": task.prompt(ex)}, {"role": "assistant", "content": attempt},
                      {"role": "user", "content": SELF_CORRECTION_INSTRUCTION}])
    return convs


def _time_engine(engine, convs, params, ttft_convs) -> dict:
    _reset_peak_rss()
    t = time.perf_counter()
    engine.generate(ttft_convs, SamplingParams(temperature=params.temperature, top_p=params.top_p,
                                               max_new_tokens=1, seed=params.seed), desc="ttft")
    ttft = time.perf_counter() - t
    t = time.perf_counter()
    outs = engine.generate(convs, params, desc="bench")
    wall = time.perf_counter() - t
    toks = sum(len(c.token_ids) for cs in outs for c in cs)
    r = {"tokens": toks, "wall_s": wall, "tok_s": toks / wall, "ttft_s": ttft, "peak_rss_mb": _peak_rss_mb()}
    st = getattr(engine, "last_stats", {}) or {}
    if st.get("decode_s"):
        r["decode_tok_s"] = st["decode_tokens"] / st["decode_s"]
        r["prefill_s"] = st["prefill_s"]
    return r


def bench_generation(model, tokenizer, batches, max_new_tokens: int, convs_per_batch: int = 2,
                     log=print, unpacked: bool = False) -> list[dict]:
    """One row per batch size: plain ``generate`` and our engine on the same prompts, model and seed; with
    ``unpacked`` also our engine without oneDNN weight prepacking (the ablation behind keeping it)."""
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=1234)
    rows = []
    for b in batches:
        convs = two_turn_conversations(max(2, convs_per_batch * b))
        plain = HFEngine(model=model, tokenizer=tokenizer, fast=False, batch_size=b)
        fast = HFEngine(model=model, tokenizer=tokenizer, fast=True, batch_size=b)
        fast.refresh()
        g = _time_engine(plain, convs, params, convs[:b])
        f = _time_engine(fast, convs, params, convs[:b])
        row = {"batch": b, "convs": len(convs), "generate": g, "ours": f, "ratio": f["tok_s"] / g["tok_s"],
               "compute_dtype": fast.compute_dtype,
               # mean context a decode step attends over: prompt + half the generated tokens
               "context_mean": sum(len(fast.render(c)) for c in convs) / len(convs) + f["tokens"] / len(convs) / 2}
        if unpacked and fast.describe()["packed"]:  # what weight prepacking contributes, same prompts and seed
            nopack = HFEngine(model=model, tokenizer=tokenizer, fast=True, batch_size=b, pack=False)
            nopack.refresh()
            row["unpacked"] = _time_engine(nopack, convs, params, convs[:b])
        log(f"batch {b}: generate {g['tok_s']:.1f} tok/s, ours {f['tok_s']:.1f} tok/s "
            f"(decode {f.get('decode_tok_s', 0):.1f}), x{row['ratio']:.2f}"
            + (f"; unpacked {row['unpacked']['tok_s']:.1f} tok/s" if "unpacked" in row else ""))
        rows.append(row)
    return rows
