"""Several ``scorebench run`` commands side by side, each in its own process (``reproduce --jobs N``).

Why processes: on a small CPU, runs of one thread each side by side finish sooner than the same runs one after
another with all the threads (a 135M model's small matmuls scale poorly past one thread: the cores are better
spent on separate runs). Each process is a whole ``scorebench run``: it holds its run directory's lock, writes its own log,
and is resumable by itself — a killed ``reproduce`` leaves every run as a killed ``run`` would, and the same
command picks them all up again.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


@dataclass
class Job:
    name: str
    """Names the log file (``<log_dir>/<name>.log``) and the job in progress lines."""
    argv: list[str]


class RunsFailed(RuntimeError):
    """Some of the side-by-side runs exited non-zero (the others ran to their end)."""

    def __init__(self, failed: list[tuple[Job, int, Path]]):
        self.failed = failed
        super().__init__(f"{len(failed)} run(s) failed: " + "; ".join(
            f"{job.name} (exit {rc}; log {log}: {_last_line(log)})" for job, rc, log in failed))


def _last_line(log: Path) -> str:
    """The last non-empty line of a log, progress bars' carriage returns split off: usually the error."""
    lines = [x.strip() for x in log.read_text(errors="replace").replace("\r", "\n").splitlines() if x.strip()]
    return lines[-1][:300] if lines else "no output"


def _stop_on_term(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _signals_for_children():
    """While jobs run: SIGINT is caught (a Python handler, never SIG_IGN), so each child starts with SIGINT at its
    default and Python there turns it into KeyboardInterrupt — a shell starts a background command (``... &``,
    ``nohup ... &``) with SIGINT ignored, and children would inherit that and ignore the stop; and SIGTERM
    (``kill PID``) stops the children as Ctrl-C does instead of orphaning them (they run in their own sessions).
    Restored after. Only the main thread may set handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    changed = {}
    for sig, replace, handler in ((signal.SIGINT, (signal.SIG_IGN, signal.SIG_DFL), signal.default_int_handler),
                                  (signal.SIGTERM, (signal.SIG_DFL,), _stop_on_term)):
        if signal.getsignal(sig) in replace:
            changed[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, handler in changed.items():
            signal.signal(sig, handler)


def run_side_by_side(jobs: list[Job], n: int, log_dir: Path, threads: int | None = None, progress: bool = True,
                     poll: float = 0.5) -> None:
    """Run ``jobs`` in order, at most ``n`` at a time, each with its output in ``<log_dir>/<name>.log``
    (appended: a rerun adds to it). ``threads`` sets OMP_NUM_THREADS for each unless the caller's environment
    sets it. A job that fails does not stop the others; at the end ``RunsFailed`` names every failure. Interrupted
    (Ctrl-C, SIGINT or SIGTERM — also when started in the background), the running jobs are stopped with SIGINT:
    runs save as they go."""
    if n < 1:
        raise ValueError(f"--jobs must be at least 1, got {n}")
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    pending, running, failed = list(jobs), {}, []
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)
    try:
        with _signals_for_children():
            _run(pending, running, failed, n, log_dir, env, progress, bar, poll)
    finally:
        bar.close()
    if failed:
        raise RunsFailed(failed)


def _run(pending, running, failed, n, log_dir, env, progress, bar, poll) -> None:
    try:
        while pending or running:
            while pending and len(running) < n:
                job = pending.pop(0)
                log = log_dir / f"{job.name}.log"
                out = open(log, "ab")
                proc = subprocess.Popen(job.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)  # its own group: Ctrl-C reaches it once
                running[proc] = (job, log, out)
                if progress:
                    tqdm.write(f"started {job.name} (log: {log})")
            time.sleep(poll)
            for proc in [p for p in running if p.poll() is not None]:
                job, log, out = running.pop(proc)
                out.close()
                bar.update()
                if proc.returncode:
                    failed.append((job, proc.returncode, log))
    except BaseException:
        for proc, (_, _, out) in running.items():
            try:
                os.killpg(proc.pid, signal.SIGINT)  # a run stops between writes; its episodes are saved
            except ProcessLookupError:
                pass
        for proc, (_, _, out) in running.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.close()
        raise
