"""Running one program in a sandbox (``execute``): start it, feed it, capture its output within caps, enforce the
wall-clock limit, kill everything it started, and read the verdict from the exit code and the sentinel."""
from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from .command import RUNNER, bwrap_cmd, env, python
from .limits import SandboxLimits, SandboxResult

_TAIL = 4096
UID_BASE = 200000 + (os.getpid() % 4000) * 512  # distinct per harness process, so NPROC counts are per sandbox


# ---- uid slots: each concurrently running sandbox gets its own unprivileged uid (RLIMIT_NPROC is per uid) ----
_slot_lock = threading.Lock()
_free_slots: list[int] = list(range(511, -1, -1))


def _take_slot() -> int:
    with _slot_lock:
        return _free_slots.pop() if _free_slots else 511


def _give_slot(s: int) -> None:
    with _slot_lock:
        if s not in _free_slots:
            _free_slots.append(s)


class _Capture:
    def __init__(self, cap: int):
        self.cap, self.head, self.tail, self.total = cap, bytearray(), bytearray(), 0

    def add(self, b: bytes) -> None:
        self.total += len(b)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += b[:room]
        self.tail += b
        if len(self.tail) > _TAIL:
            del self.tail[:-_TAIL]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def full_or_tail(self) -> bytes:
        return bytes(self.head) if not self.truncated else bytes(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return self.head.decode("utf-8", "replace")
        tail = bytes(self.tail[-min(_TAIL, self.total - len(self.head)):])
        skipped = self.total - len(self.head) - len(tail)
        return (self.head.decode("utf-8", "replace") + f"\n...[sandbox: {skipped} bytes truncated]...\n"
                + tail.decode("utf-8", "replace"))


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait (polling) until ``pid`` has exited, leaving it a zombie; False if the deadline passed first."""
    delay = 0.0005
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def execute(source: str, limits: SandboxLimits, kind: str) -> SandboxResult:
    """Run ``source`` in a sandbox of ``kind`` ("bubblewrap" or "rlimits-only") under ``limits``."""
    token = secrets.token_hex(16)
    slot = _take_slot()
    workdir = None
    t0 = time.monotonic()
    try:
        if kind == "bubblewrap":
            cmd, cwd = bwrap_cmd(limits), "/"
            uid = gid = (UID_BASE + slot) if os.geteuid() == 0 else -1
        else:
            workdir = tempfile.mkdtemp(prefix="scorebench-sbx-")
            os.chmod(workdir, 0o700)
            cmd, cwd, uid, gid = [python(), "-I", "-S", "-c", RUNNER], workdir, -1, -1
        header = (f"{uid} {gid} {limits.max_procs} {limits.memory_mb * 1024 * 1024} {int(limits.cpu_s)} "
                  f"{limits.memory_mb * 1024 * 1024} {0 if kind == 'bubblewrap' else 1} {token}\n").encode()
        payload = header + source.encode("utf-8", "replace")
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as e:
            return SandboxResult(False, "error", "", f"sandbox: could not start: {e}", None,
                                 time.monotonic() - t0)
        caps = {proc.stdout.fileno(): _Capture(limits.max_output_bytes),
                proc.stderr.fileno(): _Capture(limits.max_output_bytes)}
        timed_out = False
        deadline = t0 + limits.wall_s
        sel = selectors.DefaultSelector()
        try:
            os.set_blocking(proc.stdin.fileno(), False)
            pending = memoryview(payload)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            open_reads = 2
            while open_reads:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for key, ev in sel.select(timeout=min(left, 0.5)):
                    if key.fileobj is proc.stdin:
                        try:
                            n = os.write(proc.stdin.fileno(), pending[:65536])
                            pending = pending[n:]
                        except BlockingIOError:
                            continue
                        except (BrokenPipeError, OSError):
                            pending = pending[:0]
                        if not len(pending):
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:
                        data = b""
                    if data:
                        caps[key.fd].add(data)
                    else:
                        sel.unregister(key.fileobj)
                        open_reads -= 1
            # Wait for the sandbox's leader to exit WITHOUT reaping it (its zombie pins the pid and the process
            # group id), kill whatever is left in its group, then reap: no pid-reuse race on killpg.
            if not timed_out and not _wait_unreaped(proc.pid, deadline):
                timed_out = True
        finally:
            sel.close()
            _kill_group(proc)  # the sandbox is over: nothing it started may outlive it
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = None
            for f in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        out_cap, err_cap = caps.values()
        wall = time.monotonic() - t0
        raw = out_cap.full_or_tail().rstrip(b"\n")
        ok_sentinel = raw.endswith(token.encode()) and (len(raw) == len(token) or raw[-len(token) - 1:-len(token)]
                                                        == b"\n")
        stdout = out_cap.text()
        if ok_sentinel:
            i = stdout.rfind("\n" + token)
            stdout = stdout[:i] if i >= 0 else stdout.replace(token, "")
        stderr = err_cap.text()
        truncated = out_cap.truncated or err_cap.truncated
        if timed_out:
            return SandboxResult(False, "timeout", stdout, stderr + f"\nsandbox: wall limit {limits.wall_s}s",
                                 rc, wall, truncated)
        if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):  # RLIMIT_CPU fired (first; a fast CPU can beat the wall)
            return SandboxResult(False, "timeout", stdout, stderr + f"\nsandbox: cpu limit {limits.cpu_s}s",
                                 rc, wall, truncated)
        passed = rc == 0 and ok_sentinel
        if passed:
            status = "passed"
        elif rc == 97 or stderr.startswith("bwrap:"):
            status = "error"
        else:
            status = "failed"
        return SandboxResult(passed, status, stdout, stderr, rc, wall, truncated)
    finally:
        _give_slot(slot)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
