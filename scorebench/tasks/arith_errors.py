"""What kind of mistake an ``arith`` attempt makes — so a study can say *which* wrong first attempts SCoRe fixes and
which right ones it breaks, counted from episodes rather than read from a few examples.

An ``arith`` problem is a chain: a starting amount and updates of +n ("buys n more") or −n ("sells n"). Its gold
is known from the text, and so is every intermediate amount. An attempt's equations ("9 - 2 = 7") are checked
against that chain, and the attempt gets the first of these kinds that applies:

- ``cut``: stopped by the token cap (an incomplete answer).
- ``no answer``: finished without a number to read.
- ``slip``: an equation whose arithmetic is wrong (9 - 2 = 6).
- ``wrong operation``: an update applied the wrong way (9 + 2 where the problem takes 2 away).
- ``invented number``: an equation uses a number that is neither in the problem, nor an amount of the chain, nor
  the result of the attempt's own earlier equations.
- ``incomplete``: finished with no equation at all, its final number one of the problem's own (it restates the
  problem and stops: "Ben has 2 stickers.").
- ``other``: wrong for none of these reasons (e.g. the right work, then a wrong final number).

A right attempt is ``clean`` unless its work has a slip, a wrong operation or an invented number, or it is a
restatement whose last number happens to be the gold ("Noah has 2 stickers. He sold 1." where 2 − 1 = 1): then its
final number is right by luck (``lucky``).
"""
from __future__ import annotations

import re
from collections import Counter

_EQ = re.compile(r"(-?\d+)\s*([+\-−])\s*(\d+)\s*=\s*(-?\d+)")
_INT = re.compile(r"\d+")
KINDS = ("cut", "no answer", "slip", "wrong operation", "invented number", "incomplete", "other")


def chain(problem: str) -> tuple[int, list[int]]:
    """(starting amount, signed updates) read from an ``arith`` problem's text."""
    sentences = [s for s in re.split(r"(?<=[.?])\s+", problem) if _INT.search(s)]
    if not sentences:
        raise ValueError(f"not an arith problem: {problem!r}")
    start = int(_INT.search(sentences[0]).group())
    ups = [int(_INT.search(s).group()) * (1 if "more" in s else -1) for s in sentences[1:]]
    return start, ups


def gold(problem: str) -> int:
    start, ups = chain(problem)
    return start + sum(ups)


def kind(problem: str, response: str, finished: bool, pred) -> str:
    """The kind of a *wrong* attempt (see the module docstring); ``pred``: the number the grader read, or None."""
    if not finished:
        return "cut"
    if pred is None:
        return "no answer"
    return _work_error(problem, response) or ("incomplete" if _restates(problem, response, pred) else "other")


def _restates(problem: str, response: str, pred) -> bool:
    """No equation, and the number read is one the problem itself states."""
    start, ups = chain(problem)
    return not _EQ.search(response) and pred in {start, *(abs(u) for u in ups)}


def _work_error(problem: str, response: str) -> str | None:
    start, ups = chain(problem)
    amounts = [start]
    for u in ups:
        amounts.append(amounts[-1] + u)
    known = set(amounts) | {abs(u) for u in ups}
    signs: dict[int, set[int]] = {}  # how each update size is applied in the problem
    for u in ups:
        signs.setdefault(abs(u), set()).add(1 if u > 0 else -1)
    found = None
    for a, op, b, c in _EQ.findall(response):
        a, b, c = int(a), int(b), int(c)
        s = 1 if op == "+" else -1
        if a + s * b != c:
            return "slip"
        if b in signs and a in amounts and s not in signs[b]:
            found = found or "wrong operation"
        elif (a not in known or b not in known) and found is None:
            found = "invented number"
        known.add(c)
    return found


def transitions(episodes: list[dict]) -> dict:
    """Counts over two-turn ``arith`` episodes (``episodes.jsonl`` rows): for i→c, the kind of the first attempt
    and whether the fix is ``lucky``; for c→i, the kind of the second attempt; plus totals."""
    fixed, broken, lucky = Counter(), Counter(), 0
    n = 0
    for e in episodes:
        t = [x for x in e["turns"] if x.get("graded", True)]
        if len(t) < 2:
            continue
        n += 1
        problem = t[0]["prompt"]
        c1, c2 = t[0]["reward"] > 0, t[1]["reward"] > 0
        if not c1 and c2:
            fixed[kind(problem, t[0]["response"], t[0].get("finish_reason") != "length",
                       (t[0].get("info") or {}).get("pred"))] += 1
            pred2 = (t[1].get("info") or {}).get("pred")
            lucky += _work_error(problem, t[1]["response"]) is not None or _restates(problem, t[1]["response"], pred2)
        elif c1 and not c2:
            broken[kind(problem, t[1]["response"], t[1].get("finish_reason") != "length",
                        (t[1].get("info") or {}).get("pred"))] += 1
    return {"episodes": n, "i2c": sum(fixed.values()), "i2c_by_kind": {k: fixed[k] for k in KINDS},
            "i2c_lucky": lucky, "c2i": sum(broken.values()), "c2i_by_kind": {k: broken[k] for k in KINDS}}
