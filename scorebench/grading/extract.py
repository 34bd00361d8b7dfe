"""Extracting the answer of a MATH-style response: the last ``\\boxed{}`` (nested braces handled), merged with
the boxes that directly precede it when only a connector ("or", "and", ",", whitespace, ``$``) joins them:
``\\boxed{2} or \\boxed{3}`` is the answer ``2 \\text{ or } 3``, a hedge. No box means no answer.
"""
from __future__ import annotations

import re

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


def unwrap_box(s: str) -> str:
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
    return unwrap_box(spans[-1][2])


_GAP_STRIP_RE = re.compile(r"\$|\\[()\[\]]|\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}|\\q?quad|\\[,;:! ]|~")
_CONNECTORS = {"", ",", ";", "or", "and", ",or", ",and", "/", "&"}


def answer_parts(response: str) -> tuple[list[str], bool]:
    """The last box plus the boxes joined to it only by connectors, and whether a connector was "or"."""
    spans = _boxed_spans(response or "")
    if not spans:
        return [], False
    parts = [unwrap_box(spans[-1][2])]
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
        parts.insert(0, unwrap_box(spans[idx - 1][2]))
        idx -= 1
    return parts, hedged


def join_answer(parts: list[str], hedged: bool) -> str:
    if len(parts) == 1:
        return parts[0]
    return (" \\text{ or } " if hedged else ", ").join(p.strip() for p in parts)


def extract_answer(response: str) -> str | None:
    """The answer of a response: its last box, merged with boxes joined to it only by a connector ("or", "and",
    ",", whitespace, ``$``) into one list-valued answer (``\\boxed{2} or \\boxed{3}`` -> ``2 \\text{ or } 3``).
    None if the response has no box."""
    parts, hedged = answer_parts(response)
    return join_answer(parts, hedged) if parts else None
