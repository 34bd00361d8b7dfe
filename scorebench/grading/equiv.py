"""Is a predicted answer equivalent to the gold one? The string fast path (``normalize``: it only removes
presentation), then math-verify's ``parse``/``verify`` with guards against its false positives (``equiv_core``,
unbounded in time: it runs in a worker process of ``pool.py``).
"""
from __future__ import annotations

import re
from functools import lru_cache

from .extract import unwrap_box

_NUM = r"\d+(?:\.\d+)?"
_SEP = r"(?:\s|\\[,;:! ]|\\q?quad(?![A-Za-z])|~)+"
_JUXT_RE = re.compile(rf"(?<![\d._^]){_NUM}(?:{_SEP}{_NUM})+(?![\d.])")
"""A maximal chain of numbers separated only by spacing (not starting at a sub/superscript: "\\log_2 8")."""


def _is_thousands(chain: str) -> bool:
    groups = re.split(_SEP, chain)
    return (1 <= len(groups[0]) <= 3 and groups[0].isdigit()
            and all(len(g) == 3 and g.isdigit() for g in groups[1:-1])
            and re.fullmatch(r"\d{3}(?:\.\d+)?", groups[-1]) is not None)


def clean(s: str) -> str:
    """Light cleanup applied before anything else (also before math-verify sees the string)."""
    s = (s or "").strip()
    s = s.replace("\\$", "").replace("$", "")  # currency \$5 -> 5, then math delimiters
    # thousands grouped by spacing ("1\\,000", "1 000 000"): math-verify reads "1\\,000" as 1*0 = 0
    s = _JUXT_RE.sub(lambda m: re.sub(_SEP, "", m.group(0)) if _is_thousands(m.group(0)) else m.group(0), s)
    s = re.sub(r"\\varnothing(?![A-Za-z])", r"\\emptyset", s)
    # a trailing sentence period: "5." -> "5" (math-verify cannot parse "5."); keep "\ldots" etc. intact
    s = re.sub(r"(?<![.\\])(?:\.|\\text\{\.\})\s*$", "", s).strip()
    s = re.sub(r"[,;:]\s*$", "", s).strip()
    return s


_SPACING_RE = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~")


def normalize(s: str) -> str:
    """A presentation-only normalization for the exact-match fast path. Conservative on purpose: two different
    values never normalize to the same string (e.g. "2 3" keeps its space, so it cannot become "23")."""
    s = clean(s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])\.?", "", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)
    s = re.sub(r"\\circ(?![A-Za-z])", "", s)
    s = s.replace("\\$", "").replace("\\%", "").replace("{,}", ",")
    s = re.sub(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\s+", " ", s).strip()
    # drop spaces unless they separate two alphanumerics (which could change meaning: "2 3", "\frac 59")
    s = re.sub(r"(?<=[^A-Za-z0-9]) | (?=[^A-Za-z0-9])", "", s)
    return s


def fast_equal(pred: str, gold: str) -> bool:
    a, b = normalize(pred), normalize(gold)
    return bool(a) and a == b


# --------------------------------------------------------------------------------------------------------------
# Guards (run inside the worker, next to math-verify)
# --------------------------------------------------------------------------------------------------------------

_HEDGE_RE = re.compile(r"\bor\b|\\lor(?![A-Za-z])|\\vee(?![A-Za-z])|\beither\b|\bmaybe\b|\bpossibly\b|\bperhaps\b",
                       re.IGNORECASE)
def _has_hedge(s: str) -> bool:
    return bool(_HEDGE_RE.search(s))


def _has_juxtaposed_numbers(s: str) -> bool:
    """Numbers separated only by spacing ("2 3", "2\\quad 3"): math-verify reads them as a sum (5), but they are a
    list or a hedge. Thousands grouping ("1\\,000", "1 000 000") and "\\frac 3 8" are not juxtapositions."""
    s = re.sub(r"\\(?:[dt]?frac|binom)\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\(?:[dt]?frac|binom|sqrt|pmod|mod)\s*\d", "", s)
    return any(not _is_thousands(m.group(0)) for m in _JUXT_RE.finditer(s))


def _is_explicit_set(s: str) -> bool:
    t = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", clean(s)).strip()
    return t.startswith("\\{") and t.endswith("\\}")


def _is_multi(x) -> bool:
    """A parsed answer that is a list of several values (so a hedge/list in the prediction may match it)."""
    from sympy import Eq, FiniteSet, Interval, Tuple, Union
    if isinstance(x, Eq):
        return _is_multi(x.rhs)
    if isinstance(x, (FiniteSet, Tuple)):
        return len(x) > 1
    if isinstance(x, (Interval, Union, tuple, list)):
        return True
    return False


def _unwrap_assignment(x):
    from sympy import Eq, Symbol
    from sympy.core.function import AppliedUndef
    if isinstance(x, Eq) and isinstance(x.lhs, (Symbol, AppliedUndef)):
        return x.rhs
    return x


def _numbers_agree(g, p) -> bool:
    """Re-check math-verify's numeric equality, which has two loose spots:

    * ``(a - b).evalf(chop=True)`` chops tiny differences to 0, so distinct tiny values collide
      (``1/2^99 == 1/2^98``; ``(2^2005+1)/(3*2^2006) == 1/(3*2^2006)``; huggingface/Math-Verify#14);
    * floats are compared after rounding to 6 decimals, so ``0.0000001 == 0.0000002`` and
      ``1.23456789 == 1.23456788`` (huggingface/Math-Verify#21).

    Here: exact vs exact must agree to ~40 significant digits; a float vs an exact value to a relative 5e-6
    (``0.333333`` still equals 1/3, ``0.33`` does not); float vs float to a relative 1e-12. Non-numeric
    expressions, percentages and anything that fails to evaluate are left to math-verify's verdict.
    """
    from sympy import Float, MatrixBase, Tuple, Interval, UnevaluatedExpr
    g, p = _unwrap_assignment(g), _unwrap_assignment(p)
    if isinstance(g, MatrixBase) and isinstance(p, MatrixBase):
        if g.shape != p.shape:
            return True
        return all(_numbers_agree(a, b) for a, b in zip(g, p))
    if isinstance(g, Interval) and isinstance(p, Interval):
        return _numbers_agree(g.start, p.start) and _numbers_agree(g.end, p.end)
    if isinstance(g, Tuple) and isinstance(p, Tuple):
        if len(g) != len(p):
            return True
        return all(_numbers_agree(a, b) for a, b in zip(g, p))
    try:
        if not (getattr(g, "is_number", False) and getattr(p, "is_number", False)):
            return True
        if g.has(UnevaluatedExpr) or p.has(UnevaluatedExpr):  # percentages: math-verify's own rules
            return True
        fg, fp = g.has(Float), p.has(Float)
        vg, vp = g.doit().evalf(60), p.doit().evalf(60)
        if not (vg.is_number and vp.is_number) or vg.has(Float) is False or vp.has(Float) is False:
            return True  # oo, zoo, nan or something unevaluable: not ours to judge
        ag, ap = abs(vg), abs(vp)
        diff = abs(vg - vp)
        scale = max(ag, ap)
        if not (scale.is_finite and diff.is_finite):
            return True
        if scale == 0:
            return True
        tol = 1e-12 if (fg and fp) else (5e-6 if (fg or fp) else 1e-40)
        return bool(diff <= tol * scale)
    except Exception:
        return True


def _guards_ok(g, p, gold: str, pred: str) -> bool:
    from sympy import Interval, Tuple
    # An explicit set {a, b} is neither an interval nor an ordered pair: math-verify matches "\{1,2\}" with "(1,2)"
    # (it reads (1,2) as an open interval, then as a pair) in both directions.
    if _is_explicit_set(pred) and (isinstance(g, Interval) or isinstance(g, Tuple)):
        return False
    if _is_explicit_set(gold) and isinstance(p, Interval):
        return False
    return _numbers_agree(g, p)


# --------------------------------------------------------------------------------------------------------------
# The core comparison (pure; runs in a worker process)
# --------------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=8192)
def parse_latex(s: str) -> tuple:
    from math_verify import LatexExtractionConfig, parse
    res = parse("\\boxed{" + s + "}", extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
                parsing_timeout=None)
    return tuple(res)


def equiv_core(pred: str, gold: str, fast: bool = True) -> bool:
    """Is pred (an answer string) equivalent to gold? Unbounded in time: call it through a worker (``is_equiv``).
    ``fast=False`` skips the string fast path (tests use it to exercise math-verify on every gold answer)."""
    from math_verify import verify
    pred, gold = clean(unwrap_box(pred or "")), clean(unwrap_box(gold or ""))
    if not pred or not gold:
        return False
    if fast and fast_equal(pred, gold):
        return True
    g_list, p_list = parse_latex(gold), parse_latex(pred)
    if not g_list or not p_list:
        return False
    gold_multi = _has_hedge(gold) or any(_is_multi(x) for x in g_list if not isinstance(x, str))
    # A hedge ("2 \text{ (or 3)}", "\boxed{2} or \boxed{3}") only matches a gold that is itself a list.
    if _has_hedge(pred) and not gold_multi:
        return False
    if _has_juxtaposed_numbers(pred) and not _has_juxtaposed_numbers(gold):
        return False
    for g in g_list:
        for p in p_list:
            if isinstance(g, str) or isinstance(p, str):
                if isinstance(g, str) and isinstance(p, str) and g.strip() and g.strip() == p.strip():
                    return True
                continue
            if verify(g, p, timeout_seconds=None) and _guards_ok(g, p, gold, pred):
                return True
    return False
