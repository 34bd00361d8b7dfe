"""Build MBPP-R (offline repair): MBPP test problems, each paired with a WRONG first attempt.

The paper's MBPP-R pairs MBPP problems with wrong first attempts produced by another model (PaLM 2). No other
model is available offline, so the wrong attempts here are seeded program mutations of the MBPP reference
solutions. Procedure (deterministic; ``--seed 0`` is the shipped file):

1. Problems: the MBPP standard test split, task_ids 11-510 (``scorebench/data/mbpp.jsonl.gz``). A problem is used
   only if its reference solution passes all of its ``test_list`` asserts in the sandbox (default limits).
2. Mutation sites: parse the reference with ``ast``; walk it (``ast.walk`` order) and list every applicable
   single-point mutation:
     compare   ``<``<->``<=``, ``>``<->``>=``, ``==``<->``!=``, ``in``<->``not in``, ``is``<->``is not``
     binop     ``+``<->``-``, ``*``->``+``, ``/``->``*``, ``//``->``/``, ``%``->``//`` (also in ``x op= y``)
     boolop    ``and``<->``or``
     not       ``not x`` -> ``x``
     const     integer literal ``c`` -> ``c + 1`` and ``c - 1`` (off-by-one, incl. literal indices and range
               bounds; bools excluded)
     bool      ``True``<->``False``
     minmax    a call of ``min``<->``max``
     return    ``return a, b`` -> ``return b, a`` (swapped return)
     cond      the test of an ``if``/``while``/conditional expression ``c`` -> ``not c``
     method    a method name swapped per METH_SWAP (``lower``<->``upper``, ``startswith``<->``endswith``,
               ``find``<->``rfind``, ``lstrip``<->``rstrip``, ``isdigit``<->``isalpha``, ...)
     kwarg     drop one keyword argument of a call (e.g. ``sorted(x, key=f)`` -> ``sorted(x)``)
     reverse   ``sorted(...)``/``.sort(...)`` without ``reverse`` -> with ``reverse=True``
3. Order: the list is shuffled with ``random.Random(f"{seed}-{task_id}")`` (string seeds are hashed with
   SHA-512, so the order is the same on every machine and Python run).
4. Selection: candidates are tried in that order, in rounds (round k tries the k-th candidate of every problem
   still without a mutant). A mutant (``ast.unparse`` of the mutated tree, so comments are dropped and the
   formatting normalized) is kept if it differs from the unparsed reference, parses, and FAILS the tests in
   the sandbox with status "failed" (an exception or a failing assert; mutants that time out are rejected, to
   keep grading fast). The first kept mutant is the problem's wrong attempt; at most ``--max-tries`` candidates
   are tried per problem; problems with none are left out.
5. Output: ``scorebench/data/mbpp_r.jsonl.gz`` (gzip mtime 0, rows in task_id order) with fields task_id, text,
   code (the reference), test_setup_code, test_list, mutation (e.g. "compare Lt->LtE at line 3"), attempt (the
   mutant code), given_attempt (the mutant as a ```python block: the protocol's turn 1) and error (the last
   stderr line of the failing run). Counts are printed and recorded in ``scorebench/data/MBPP_R.md``.

Run: ``.venv/bin/python scripts/build_mbpp_r.py`` (about a minute on 2 cores).
"""
from __future__ import annotations

import argparse
import ast
import copy
import gzip
import json
import os
import random
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scorebench.sandbox import SandboxLimits, run_many, sandbox_kind  # noqa: E402
from scorebench.tasks.base import read_jsonl_gz  # noqa: E402
from scorebench.tasks.code import MBPP_SPLITS, mbpp_program  # noqa: E402

CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
            ast.Mod: ast.FloorDiv}


METH_SWAP = {"lower": "upper", "upper": "lower", "startswith": "endswith", "endswith": "startswith",
             "islower": "isupper", "isupper": "islower", "find": "rfind", "rfind": "find", "index": "rindex",
             "rindex": "index", "lstrip": "rstrip", "rstrip": "lstrip", "pop": "clear", "extend": "append",
             "isdigit": "isalpha", "isalpha": "isdigit"}


def sites(tree: ast.AST) -> list[tuple[int, str, object]]:
    """All single-point mutations of ``tree``: (node index in ast.walk order, kind, argument)."""
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in CMP_SWAP:
                    out.append((i, "compare", j))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BIN_SWAP:
            out.append((i, "binop", None))
        elif isinstance(node, ast.BoolOp):
            out.append((i, "boolop", None))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((i, "not", None))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            out.append((i, "const", +1))
            out.append((i, "const", -1))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            out.append((i, "bool", None))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            out.append((i, "minmax", None))
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) >= 2:
            out.append((i, "return", None))
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            out.append((i, "cond", None))
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in METH_SWAP:
                out.append((i, "method", None))
            for j, _ in enumerate(node.keywords):
                out.append((i, "kwarg", j))
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in ("sorted", "sort") and not any(k.arg == "reverse" for k in node.keywords):
                out.append((i, "reverse", None))
    return out


def apply(tree: ast.AST, site: tuple[int, str, object]) -> tuple[ast.AST, str]:
    """A mutated copy of ``tree`` and a description of the mutation."""
    t = copy.deepcopy(tree)
    i, kind, arg = site
    node = list(ast.walk(t))[i]
    line = getattr(node, "lineno", "?")
    if kind == "compare":
        old = node.ops[arg]
        node.ops[arg] = CMP_SWAP[type(old)]()
        desc = f"compare {type(old).__name__}->{type(node.ops[arg]).__name__}"
    elif kind == "binop":
        old = node.op
        node.op = BIN_SWAP[type(old)]()
        desc = f"binop {type(old).__name__}->{type(node.op).__name__}"
    elif kind == "boolop":
        old = node.op
        node.op = ast.Or() if isinstance(old, ast.And) else ast.And()
        desc = f"boolop {type(old).__name__}->{type(node.op).__name__}"
    elif kind == "not":
        desc = "not removed"  # the node is replaced by its operand below
    elif kind == "const":
        desc = f"const {node.value}->{node.value + arg}"
        node.value = node.value + arg
    elif kind == "bool":
        desc = f"bool {node.value}->{not node.value}"
        node.value = not node.value
    elif kind == "minmax":
        old = node.func.id
        node.func.id = "max" if old == "min" else "min"
        desc = f"call {old}->{node.func.id}"
    elif kind == "return":
        node.value.elts = node.value.elts[::-1]
        desc = "return values swapped"
    elif kind == "cond":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        desc = "condition negated"
    elif kind == "method":
        old = node.func.attr
        node.func.attr = METH_SWAP[old]
        desc = f"method {old}->{node.func.attr}"
    elif kind == "kwarg":
        desc = f"kwarg {node.keywords[arg].arg}= dropped"
        del node.keywords[arg]
    elif kind == "reverse":
        node.keywords.append(ast.keyword(arg="reverse", value=ast.Constant(True)))
        desc = "reverse=True added"
    else:  # pragma: no cover
        raise ValueError(kind)
    if kind == "not":  # replace "not x" by "x" in its parent
        t = _NotRemover(i).visit(copy.deepcopy(tree))
    return t, f"{desc} at line {line}"


class _NotRemover(ast.NodeTransformer):
    def __init__(self, target_index: int):
        self.target = target_index

    def visit(self, tree):
        nodes = list(ast.walk(tree))
        target = nodes[self.target]

        class R(ast.NodeTransformer):
            def generic_visit(self, node):
                super().generic_visit(node)
                return node.operand if node is target else node

        return R().visit(tree)


def candidates(code: str, task_id: int, seed: int) -> list[tuple[str, str]]:
    tree = ast.parse(code)
    base = ast.unparse(tree)
    s = sites(tree)
    random.Random(f"{seed}-{task_id}").shuffle(s)
    out, seen = [], {base}
    for site in s:
        t, desc = apply(tree, site)
        try:
            src = ast.unparse(ast.fix_missing_locations(t))
            ast.parse(src)
        except (SyntaxError, ValueError, RecursionError):
            continue
        if src in seen:
            continue
        seen.add(src)
        out.append((src, desc))
    return out


def build(seed: int = 0, max_tries: int = 12, workers: int | None = None) -> tuple[list[dict], dict]:
    lo, hi = MBPP_SPLITS["test"]
    probs = [r for r in read_jsonl_gz("mbpp.jsonl.gz") if lo <= r["task_id"] <= hi]
    limits = SandboxLimits(wall_s=5.0)  # for mutants; references get the task's default limits
    ref = run_many([mbpp_program(p, p["code"]) for p in probs], SandboxLimits(), workers=workers)
    ok = [p for p, r in zip(probs, ref) if r.passed]
    counts = Counter(problems=len(probs), reference_passes=len(ok))
    cands = {}
    for p in ok:
        try:
            cands[p["task_id"]] = candidates(p["code"], p["task_id"], seed)
        except SyntaxError:
            cands[p["task_id"]] = []
    chosen: dict[int, dict] = {}
    for k in range(max_tries):
        todo = [p for p in ok if p["task_id"] not in chosen and k < len(cands[p["task_id"]])]
        if not todo:
            break
        progs = [mbpp_program(p, cands[p["task_id"]][k][0]) for p in todo]
        res = run_many(progs, limits, workers=workers)
        for p, r in zip(todo, res):
            counts["mutants_run"] += 1
            counts[f"mutant_{r.status}"] += 1
            if r.status == "failed":
                src, desc = cands[p["task_id"]][k]
                err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
                chosen[p["task_id"]] = {
                    "task_id": p["task_id"], "text": p["text"], "code": p["code"],
                    "test_setup_code": p["test_setup_code"], "test_list": p["test_list"],
                    "mutation": desc, "attempt": src, "given_attempt": f"```python\n{src}\n```",
                    "error": (err[-1] if err else "")[:300]}
    rows = [chosen[t] for t in sorted(chosen)]
    counts["no_sites_or_all_survived"] = len(ok) - len(rows)
    counts["kept"] = len(rows)
    counts.update(Counter("mutation:" + r["mutation"].split()[0] for r in rows))
    return rows, dict(counts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tries", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scorebench",
                                                  "data", "mbpp_r.jsonl.gz"))
    a = ap.parse_args(argv)
    print(f"sandbox: {sandbox_kind()}", file=sys.stderr)
    rows, counts = build(a.seed, a.max_tries)
    with open(a.out, "wb") as raw, gzip.GzipFile(filename="mbpp_r.jsonl", mode="wb", fileobj=raw, mtime=0) as f:
        for r in rows:
            f.write((json.dumps(r) + "\n").encode())
    print(json.dumps(counts, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
