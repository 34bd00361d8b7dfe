"""Wall time of the same small job as 1 process (all threads) and as N processes (threads split), in one run.

    python scripts/multiproc_walltime.py --out results/multiproc-cpu.md [--procs 2] [--threads 2]

Jobs (embedded model, CPU): ``eval`` = base on 64 ``arith`` test problems in chunks of 16; ``train`` = SCoRe, two
steps of 8 problems x 2 samples, then evaluation on 16 test problems. Runs go in ABBA order (1, N, N, 1 processes)
so drift on a shared machine hits both arms alike; the table reports each arm's mean and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = {"dtype": "float32", "temperature": 0.7, "lr": 1e-6, "micro_batch_size": 8,
          "score": {"stage1_steps": 1, "stage2_steps": 1, "problems_per_step": 8, "samples_per_problem": 2,
                    "max_new_tokens": 64}}


def job_args(job: str, out: Path, preset: Path) -> list[str]:
    if job == "eval":
        return ["run", "--method", "base", "--task", "arith", "--limit", "64", "--batch-size", "16",
                "--device", "cpu", "--out", str(out)]
    return ["run", "--method", "score", "--task", "arith", "--limit", "16", "--batch-size", "16", "--preset",
            str(preset), "--device", "cpu", "--out", str(out)]


def once(job: str, procs: int, threads: int, work: Path, preset: Path, i: int) -> float:
    out = work / f"{job}-{procs}p-{i}"
    per = max(1, threads // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(per), "MKL_NUM_THREADS": str(per)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m"]
                if procs > 1 else [sys.executable, "-m"])
    t0 = time.time()
    subprocess.run(launcher + ["scorebench"] + job_args(job, out, preset), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.time() - t0
    shutil.rmtree(out, ignore_errors=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads in all, split among processes")
    ap.add_argument("--jobs", default="eval,train")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="multiproc-"))
    preset = work / "preset.json"
    preset.write_text(json.dumps(PRESET))
    rows = []
    for job in a.jobs.split(","):
        times: dict[int, list[float]] = {1: [], a.procs: []}
        for i, procs in enumerate((1, a.procs, a.procs, 1)):
            times[procs].append(once(job, procs, a.threads, work, preset, i))
            print(f"{job} {procs}p: {times[procs][-1]:.1f} s", flush=True)
        one, many = (sum(times[p]) / len(times[p]) for p in (1, a.procs))
        rows.append(f"| {job} | {one:.1f} | {many:.1f} | {one / many:.2f}× |")
    shutil.rmtree(work, ignore_errors=True)
    cmd = "python scripts/multiproc_walltime.py " + " ".join(sys.argv[1:])
    from scorebench.rundir import git_commit
    commit = (git_commit() or "unknown")[:7]
    text = "\n".join([
        f"# One process vs {a.procs} processes, same job, same machine, one run",
        "",
        f"Command: `{cmd}` (code at commit {commit}) — machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"{a.threads} threads in all (1 process x {a.threads} threads vs {a.procs} processes x "
        f"{max(1, a.threads // a.procs)}); ABBA order, mean of two runs each; wall time includes process start "
        "and model load.",
        "",
        f"| job | 1 process (s) | {a.procs} processes (s) | speed-up |",
        "|---|---|---|---|",
        *rows, ""])
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
