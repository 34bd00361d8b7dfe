"""Persistent grading worker processes, shared by all threads, each call bounded in time.

Why processes: math-verify's timeouts use ``signal.alarm``, which works only on the main thread, and even there a
signal cannot interrupt one long C-level operation (``5^{5^{5^{5^5}}}`` is a single big-int power; see
huggingface/Math-Verify#65). A worker (``python -m scorebench.grading.pool --worker``) gets a soft ``setitimer``
deadline for ordinary slow sympy code and is killed and replaced by the parent if it overruns the hard deadline,
so grading is bounded from any thread. A pipe round trip costs ~0.1 ms against ~1-10 ms for parse+verify.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .equiv import equiv_core, parse_latex

DEFAULT_TIMEOUT_S = 5.0
"""Per-pair budget for parse + verify in a worker."""
_HARD_GRACE_S = 1.5
"""The parent kills a worker this long after the soft deadline it gave it."""
_READY_TIMEOUT_S = 120.0
"""How long a new worker may take to import sympy/math-verify before it is considered broken."""
_MAX_CALLS_PER_WORKER = 5000
"""Recycle workers now and then: sympy's caches grow."""


class _SoftTimeout(BaseException):
    """Raised by SIGALRM inside a worker. BaseException: math-verify swallows Exception."""


def _worker_main() -> None:
    """``python -m scorebench.grading.pool --worker``: JSON lines in ({"p","g","t"}), JSON lines out ({"ok"})."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    logging.disable(logging.WARNING)  # math-verify warns about disabled timeouts; the parent enforces them
    import math_verify  # noqa: F401  (warm the import before announcing readiness)
    parse_latex("1")
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
                ok = bool(equiv_core(req["p"], req["g"], fast=req.get("f", True)))
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
        self.proc = subprocess.Popen([sys.executable, "-m", "scorebench.grading.pool", "--worker"],
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


if __name__ == "__main__" and "--worker" in sys.argv[1:]:
    _worker_main()
