"""Grading MATH-style answers: the last ``\\boxed{}`` of a response against a gold answer.

Pipeline for one (response, gold) pair:

1. ``extract_answer``: the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` (nested braces
   handled). Boxes that directly precede it, joined only by a connector ("or", "and", ",", whitespace, ``$``), are
   merged with it into one list: ``\\boxed{2} or \\boxed{3}`` is the answer ``2 \\text{ or } 3``, a hedge. No box means
   no answer, which is wrong (the MATH convention).
2. Fast path, in-process: the normalized strings are equal (spacing, ``\\left``/``\\right``, ``\\dfrac``, ``\\$``,
   degrees, ``\\text{}`` wrappers, a trailing period). Sound: it only removes presentation.
3. Otherwise math-verify, in a persistent worker *process*: ``parse`` each side wrapped in ``\\boxed{}``, then
   ``verify(gold, pred)`` (gold first: verify is not symmetric), with math-verify's own signal timeouts off
   (``parsing_timeout=None``, ``timeout_seconds=None``), followed by guards against math-verify's false positives
   (see ``_guards_ok`` and ``equiv_core``).

Where each step lives: ``extract.py`` (1), ``equiv.py`` (2 and the comparison of 3), ``pool.py`` (the worker
processes, and why they are processes). This module is the public API: all sympy work goes to the workers; only
the string fast path stays in-process.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from .equiv import clean, fast_equal, normalize  # noqa: F401  (normalize: public here)
from .extract import answer_parts, extract_answer, join_answer, last_boxed, unwrap_box  # noqa: F401
from .pool import _POOL, DEFAULT_TIMEOUT_S, default_workers  # noqa: F401  (_POOL: tests reach the workers)

log = logging.getLogger(__name__)


def is_equiv(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is the answer ``pred`` equivalent to the gold answer? Both are answer strings (a ``\\boxed{}`` wrapper is
    removed). Bounded by ~``timeout_s`` (+1.5 s) from any thread; a timeout counts as not equivalent."""
    if pred is None or gold is None:
        return False
    p, g = clean(unwrap_box(pred)), clean(unwrap_box(gold))
    if not p or not g:
        return False
    if fast_equal(p, g):
        return True
    ok = _POOL.call(p, g, timeout_s)
    if ok is None:
        log.warning("math grading timed out after %.1fs (pred=%.80r, gold=%.80r); counted as incorrect",
                    timeout_s, p, g)
    return bool(ok)


def grade_response(response: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """{'correct': bool, 'pred': the extracted answer or None}. No boxed answer -> incorrect.

    Several boxes joined by connectors form one answer: it is correct if, as a list, it equals the gold (a list
    gold), or if every box is equivalent to the gold (the same answer in two forms, as in MATH's own solution
    "\\boxed{15\\frac{39}{40}}, or \\boxed{\\frac{639}{40}}"). A hedge between different values is wrong.
    """
    parts, hedged = answer_parts(response or "")
    if not parts:
        return {"correct": False, "pred": None}
    pred = join_answer(parts, hedged)
    ok = is_equiv(pred, gold, timeout_s=timeout_s)
    if not ok and len(parts) > 1:
        ok = all(is_equiv(p, gold, timeout_s=timeout_s) for p in parts)
    return {"correct": ok, "pred": pred}


def fast_grade(response: str, gold: str) -> dict | None:
    """``grade_response``'s result when it needs no math-verify (no boxed answer, or one that equals the gold
    as a string after normalisation), else None: such a pair goes to a worker process."""
    parts, _ = answer_parts(response or "")
    if not parts:
        return {"correct": False, "pred": None}
    if len(parts) == 1 and fast_equal(clean(parts[0]), clean(unwrap_box(gold or ""))):
        return {"correct": True, "pred": parts[0]}
    return None


def grade_many(pairs: list[tuple[str, str]], workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               progress: bool = False, desc: str = "grading") -> list[dict]:
    """``grade_response`` over (response, gold) pairs, in order, using up to ``workers`` worker processes.
    Pairs settled by the string fast path never leave this process."""
    from tqdm.auto import tqdm
    workers = max(1, workers or default_workers())
    results: list[dict | None] = [None] * len(pairs)
    slow: list[int] = []
    bar = tqdm(total=len(pairs), desc=desc, disable=not progress, leave=False)
    for i, (resp, gold) in enumerate(pairs):
        results[i] = fast_grade(resp, gold)
        if results[i] is None:
            slow.append(i)
            continue
        bar.update(1)
    if slow:
        n = min(workers, len(slow))
        _POOL.ensure(n)
        with ThreadPoolExecutor(max_workers=n) as ex:
            for i, res in zip(slow, ex.map(lambda i: grade_response(pairs[i][0], pairs[i][1], timeout_s), slow)):
                results[i] = res
                bar.update(1)
    bar.close()
    return results  # type: ignore[return-value]
