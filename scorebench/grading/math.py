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
   (see ``_guards_ok`` and ``_equiv_core``).

Why processes: math-verify's timeouts use ``signal.alarm``, which works only on the main thread, and even there a
signal cannot interrupt one long C-level operation (``5^{5^{5^{5^5}}}`` is a single big-int power; see
huggingface/Math-Verify#65). A worker gets a soft ``setitimer`` deadline for ordinary slow sympy code and is killed
and replaced by the parent if it overruns the hard deadline, so grading is bounded from any thread. A pipe round
trip costs ~0.1 ms against ~1-10 ms for parse+verify, so all sympy work goes to the workers; only the string fast
path stays in-process.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
"""Per-pair budget for parse + verify in a worker."""
_HARD_GRACE_S = 1.5
"""The parent kills a worker this long after the soft deadline it gave it."""
_READY_TIMEOUT_S = 120.0
"""How long a new worker may take to import sympy/math-verify before it is considered broken."""
_MAX_CALLS_PER_WORKER = 5000
"""Recycle workers now and then: sympy's caches grow."""

# --------------------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """All top-level boxes as (start, end, content), left to right. Unbalanced boxes (truncated output) are skipped;
    boxes nested inside a box are part of its content, not separate spans."""
    out: list[tuple[int, int, str]] = []
    if not text:
        return out
    i, n = 0, len(text)
    while True:
        m = _BOX_RE.search(text, i)
        if not m:
            return out
        j = m.end()
        k = j
        while k < n and text[k] in " \t":
            k += 1
        if k < n and text[k] == "{":
            depth, pos, end = 0, k, None
            while pos < n:
                c = text[pos]
                if c == "\\":
                    pos += 2  # an escaped character, e.g. \{ or \}, never counts
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        end = pos + 1
                        break
                pos += 1
            if end is None:  # unbalanced: skip this box
                i = j
                continue
            out.append((m.start(), end, text[k + 1:end - 1]))
            i = end
        elif k > j and k < n:  # "\boxed 5": the next token, up to whitespace or $
            mm = re.match(r"[^\s$]+", text[k:])
            tok = mm.group(0) if mm else ""
            end = k + len(tok)
            tok = tok.rstrip(".,;:")
            if tok:
                out.append((m.start(), end, tok))
            i = max(end, j)
        else:
            i = j


def _unwrap_box(s: str) -> str:
    """``\\boxed{\\boxed{5}}`` -> ``5``."""
    while True:
        t = s.strip()
        spans = _boxed_spans(t)
        if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(t):
            s = spans[0][2]
        else:
            return s


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, or ``\\boxed x``) in text; None if there is none."""
    spans = _boxed_spans(text or "")
    if not spans:
        return None
    return _unwrap_box(spans[-1][2])


_GAP_STRIP_RE = re.compile(r"\$|\\[()\[\]]|\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}|\\q?quad|\\[,;:! ]|~")
_CONNECTORS = {"", ",", ";", "or", "and", ",or", ",and", "/", "&"}


def _answer_parts(response: str) -> tuple[list[str], bool]:
    """The last box plus the boxes joined to it only by connectors, and whether a connector was "or"."""
    spans = _boxed_spans(response or "")
    if not spans:
        return [], False
    parts = [_unwrap_box(spans[-1][2])]
    hedged = False
    idx = len(spans) - 1
    while idx > 0:
        gap = response[spans[idx - 1][1]:spans[idx][0]]
        if len(gap) > 60:
            break
        g = _GAP_STRIP_RE.sub(lambda m: m.group(1) or " ", gap)
        g = re.sub(r"\s+", "", g).lower().rstrip(".")
        if g not in _CONNECTORS:
            break
        hedged = hedged or "or" in g
        parts.insert(0, _unwrap_box(spans[idx - 1][2]))
        idx -= 1
    return parts, hedged


def _join(parts: list[str], hedged: bool) -> str:
    if len(parts) == 1:
        return parts[0]
    return (" \\text{ or } " if hedged else ", ").join(p.strip() for p in parts)


def extract_answer(response: str) -> str | None:
    """The answer of a response: its last box, merged with boxes joined to it only by a connector ("or", "and",
    ",", whitespace, ``$``) into one list-valued answer (``\\boxed{2} or \\boxed{3}`` -> ``2 \\text{ or } 3``).
    None if the response has no box."""
    parts, hedged = _answer_parts(response)
    return _join(parts, hedged) if parts else None


# --------------------------------------------------------------------------------------------------------------
# Normalization and the fast path
# --------------------------------------------------------------------------------------------------------------

_NUM = r"\d+(?:\.\d+)?"
_SEP = r"(?:\s|\\[,;:! ]|\\q?quad(?![A-Za-z])|~)+"
_JUXT_RE = re.compile(rf"(?<![\d._^]){_NUM}(?:{_SEP}{_NUM})+(?![\d.])")
"""A maximal chain of numbers separated only by spacing (not starting at a sub/superscript: "\\log_2 8")."""


def _is_thousands(chain: str) -> bool:
    groups = re.split(_SEP, chain)
    return (1 <= len(groups[0]) <= 3 and groups[0].isdigit()
            and all(len(g) == 3 and g.isdigit() for g in groups[1:-1])
            and re.fullmatch(r"\d{3}(?:\.\d+)?", groups[-1]) is not None)


def _clean(s: str) -> str:
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
    s = _clean(s)
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


def _fast_equal(pred: str, gold: str) -> bool:
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
    t = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", _clean(s)).strip()
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
def _parse(s: str) -> tuple:
    from math_verify import LatexExtractionConfig, parse
    res = parse("\\boxed{" + s + "}", extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
                parsing_timeout=None)
    return tuple(res)


def _equiv_core(pred: str, gold: str, fast: bool = True) -> bool:
    """Is pred (an answer string) equivalent to gold? Unbounded in time: call it through a worker (``is_equiv``).
    ``fast=False`` skips the string fast path (tests use it to exercise math-verify on every gold answer)."""
    from math_verify import verify
    pred, gold = _clean(_unwrap_box(pred or "")), _clean(_unwrap_box(gold or ""))
    if not pred or not gold:
        return False
    if fast and _fast_equal(pred, gold):
        return True
    g_list, p_list = _parse(gold), _parse(pred)
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


# --------------------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------------------

class _SoftTimeout(BaseException):
    """Raised by SIGALRM inside a worker. BaseException: math-verify swallows Exception."""


def _worker_main() -> None:
    """``python -m scorebench.grading.math --worker``: JSON lines in ({"p","g","t"}), JSON lines out ({"ok"})."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    logging.disable(logging.WARNING)  # math-verify warns about disabled timeouts; the parent enforces them
    import math_verify  # noqa: F401  (warm the import before announcing readiness)
    _parse("1")
    out = sys.stdout.buffer

    def on_alarm(signum, frame):
        raise _SoftTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        ok: bool | None
        try:
            signal.setitimer(signal.ITIMER_REAL, max(float(req.get("t", DEFAULT_TIMEOUT_S)), 0.01))
            try:
                ok = bool(_equiv_core(req["p"], req["g"], fast=req.get("f", True)))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftTimeout:
            ok = None
        except Exception:
            ok = False
        out.write((json.dumps({"ok": ok}) + "\n").encode())
        out.flush()


class _Worker:
    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONHASHSEED", "0")
        self.proc = subprocess.Popen([sys.executable, "-m", "scorebench.grading.math", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, bufsize=0, close_fds=True)
        self._buf = b""
        self.ready = False
        self.calls = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _readline(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker died
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def call(self, pred: str, gold: str, timeout_s: float, fast: bool = True) -> bool | None:
        """True/False, or None on a timeout or a crash (the worker is then dead)."""
        if not self.ready:
            if self._readline(time.monotonic() + _READY_TIMEOUT_S) is None:
                self.kill()
                raise RuntimeError("scorebench.grading.math: a grading worker failed to start")
            self.ready = True
        self.calls += 1
        try:
            self.proc.stdin.write((json.dumps({"p": pred, "g": gold, "t": timeout_s, "f": fast}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return None
        line = self._readline(time.monotonic() + timeout_s + _HARD_GRACE_S)
        if line is None:
            self.kill()
            return None
        try:
            return json.loads(line)["ok"]
        except (ValueError, KeyError):
            self.kill()
            return None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except Exception:
            self.kill()


class _Pool:
    """Persistent worker processes shared by all threads. ``size`` only grows."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self.size = 1
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # we were forked: the pipes belong to the parent
            self._idle, self._count, self._pid = [], 0, os.getpid()

    def ensure(self, n: int) -> None:
        with self._cond:
            self._check_fork()
            if n > self.size:
                self.size = n
                self._cond.notify_all()

    def acquire(self) -> _Worker:
        with self._cond:
            self._check_fork()
            while True:
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        return w
                    self._count -= 1
                if self._count < self.size:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return _Worker()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def release(self, w: _Worker) -> None:
        with self._cond:
            if os.getpid() != self._pid:
                return
            if w.alive() and w.calls < _MAX_CALLS_PER_WORKER:
                self._idle.append(w)
            else:
                if w.alive():
                    w.close()
                self._count -= 1
            self._cond.notify()

    def call(self, pred: str, gold: str, timeout_s: float, fast: bool = True) -> bool | None:
        w = self.acquire()
        try:
            return w.call(pred, gold, timeout_s, fast)
        finally:
            self.release(w)

    def shutdown(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.close()


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------

def is_equiv(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Is the answer ``pred`` equivalent to the gold answer? Both are answer strings (a ``\\boxed{}`` wrapper is
    removed). Bounded by ~``timeout_s`` (+1.5 s) from any thread; a timeout counts as not equivalent."""
    if pred is None or gold is None:
        return False
    p, g = _clean(_unwrap_box(pred)), _clean(_unwrap_box(gold))
    if not p or not g:
        return False
    if _fast_equal(p, g):
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
    parts, hedged = _answer_parts(response or "")
    if not parts:
        return {"correct": False, "pred": None}
    pred = _join(parts, hedged)
    ok = is_equiv(pred, gold, timeout_s=timeout_s)
    if not ok and len(parts) > 1:
        ok = all(is_equiv(p, gold, timeout_s=timeout_s) for p in parts)
    return {"correct": ok, "pred": pred}


def fast_grade(response: str, gold: str) -> dict | None:
    """``grade_response``'s result when it needs no math-verify (no boxed answer, or one that equals the gold
    as a string after normalisation), else None: such a pair goes to a worker process."""
    parts, _ = _answer_parts(response or "")
    if not parts:
        return {"correct": False, "pred": None}
    if len(parts) == 1 and _fast_equal(_clean(parts[0]), _clean(_unwrap_box(gold or ""))):
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


if __name__ == "__main__" and "--worker" in sys.argv[1:]:
    _worker_main()
