"""Run model-written Python (hostile input) in a sandbox, never in the harness process.

Each program runs in its own process tree. Two kinds of sandbox exist; ``sandbox_kind()`` says which one is in
use and the harness records it in each run's ``config.json``:

``"bubblewrap"`` (preferred; needs ``/usr/bin/bwrap``)
    * new pid, network, IPC, UTS (and cgroup) namespaces: no network at all (only a down loopback), no view of
      host processes; ``--die-with-parent`` and pid-namespace teardown kill every process the program started
      when the sandbox ends (orphans, daemons, SIGTERM-ignorers, setsid escapes all die with the namespace's init);
    * a minimal read-only filesystem: ``/usr`` (and the ``/bin``, ``/lib*``, ``/sbin`` links), ``/etc`` and the
      Python installation, read-only; a size-capped private ``tmpfs`` at ``/tmp`` is the only writable place
      (and the working directory); ``/proc`` and ``/dev`` are the sandbox's own minimal ones; ``/root``,
      ``/home``, ``/work`` etc. are not there at all;
    * an empty environment except PATH, LANG, HOME, PYTHONHASHSEED, PYTHONIOENCODING, PYTHONDONTWRITEBYTECODE;
    * wall-clock limit (enforced by the harness: SIGKILL to the sandbox's process group, which tears down the pid
      namespace), RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0, RLIMIT_NPROC;
    * process-count limit that really holds even though the harness runs as root: the kernel ignores
      RLIMIT_NPROC for uid 0 (and for a user namespace mapped onto uid 0), so bubblewrap is started as root
      *without* a user namespace, keeps only CAP_SETUID/CAP_SETGID (``--cap-drop ALL``; NO_NEW_PRIVS is set),
      and the in-sandbox runner drops to a dedicated unprivileged uid/gid (one per concurrent slot, no
      supplementary groups; all capabilities are cleared by the uid change) *before* any model code runs. The
      kernel then counts and limits that uid's processes/threads. When the harness is not root, bubblewrap runs
      unprivileged with ``--unshare-user`` and RLIMIT_NPROC applies to the caller's own uid.

``"rlimits-only"`` (fallback, loudly warned about once)
    a plain subprocess in a new session with the same resource limits, scrubbed environment and a temporary
    working directory. It does NOT isolate the network or the filesystem, and orphans that call setsid() can
    outlive the process-group kill. RLIMIT_NPROC is not enforced when the harness runs as root.

"Passed" means every test ran: the program (solution + tests) is executed by a small runner that, only after
the program finished normally, writes a random per-run sentinel (``secrets.token_hex``) as the last line of
stdout and exits 0. A program that calls ``os._exit(0)``/``sys.exit(0)`` early, raises SystemExit, is killed or
times out never prints it. The sentinel is never in the program's source or on disk, in argv or the
environment: the runner reads it together with the program from a pipe on stdin (then stdin is /dev/null).
It is not a global of the runner's ``__main__`` nor a local of the frame that runs the program (only a
closure cell). Residual risk, documented: it lives in the runner's memory, so a deliberately adversarial program
that introspects the interpreter (closure cells through ``sys._getframe``, ``gc``, ``/proc/self/mem``) could find
and print it. This guards against
the realistic failure modes (early exits, swallowed tests), not against code written to forge a pass.
"""
from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["SandboxLimits", "SandboxResult", "sandbox_kind", "run_program", "run_many"]


@dataclass
class SandboxLimits:
    wall_s: float = 10.0
    """Wall-clock limit in seconds for the whole process tree; on expiry everything is SIGKILLed (status timeout)."""
    cpu_s: int = 10
    """RLIMIT_CPU in seconds, per process (SIGXCPU, then SIGKILL one second later)."""
    memory_mb: int = 1024
    """RLIMIT_AS (virtual address space) in MiB, per process; also the size cap of the sandbox's /tmp tmpfs."""
    max_procs: int = 64
    """RLIMIT_NPROC: processes + threads the sandbox's uid may have at once (fork bombs hit it)."""
    max_output_bytes: int = 65536
    """Captured bytes kept per stream (head); a 4 KiB tail is kept too. The rest is drained and discarded."""


@dataclass
class SandboxResult:
    passed: bool
    """Exit code 0 and the sentinel was the last line of stdout: every test ran."""
    status: str
    """"passed", "failed" (non-zero exit, exception, early exit), "timeout" (wall or CPU limit), "error" (sandbox
    failed)."""
    stdout: str
    """Captured stdout, sentinel removed; head + tail with a truncation marker when over the cap."""
    stderr: str
    """Captured stderr (same capping)."""
    returncode: int | None
    """The sandbox process's exit code (negative: killed by that signal); None if it never started."""
    wall_s: float
    """Wall time of this program, including sandbox start-up."""
    truncated: bool = False
    """True when stdout or stderr exceeded max_output_bytes."""


_TAIL = 4096
_UID_BASE = 200000 + (os.getpid() % 4000) * 512  # distinct per harness process, so NPROC counts are per sandbox
_MARK_DIRS = ("/root", "/home", "/work", "/mnt", "/media", "/srv", "/opt", "/var", "/run", "/boot", "/snap")

# The in-sandbox runner. stdin: one header line "uid gid nproc as_bytes cpu fsize fork token" then the program.
# fork=1 (the rlimits-only fallback): the program runs in a forked child, so os.getppid() is this runner, not the
# harness; the runner relays the child's exit status.
_RUNNER = r'''
import os, sys, resource
_d = sys.stdin.buffer.read()
_fd = os.open("/dev/null", os.O_RDONLY); os.dup2(_fd, 0); os.close(_fd)
_h, _, _src = _d.partition(b"\n"); del _d
_uid, _gid, _np, _as, _cpu, _fs, _fk, _tok = _h.split()
_uid, _gid, _np, _as, _cpu, _fs, _fk = map(int, (_uid, _gid, _np, _as, _cpu, _fs, _fk))
_R = resource
for _k, _v in ((_R.RLIMIT_AS, _as), (_R.RLIMIT_CPU, _cpu), (_R.RLIMIT_FSIZE, _fs), (_R.RLIMIT_CORE, 0),
               (_R.RLIMIT_NOFILE, 256), (_R.RLIMIT_NPROC, _np)):
    try:
        _R.setrlimit(_k, (_v, _v + 1 if _k == _R.RLIMIT_CPU else _v))
    except (ValueError, OSError):
        pass
if _uid >= 0:
    os.setgroups([]); os.setresgid(_gid, _gid, _gid); os.setresuid(_uid, _uid, _uid)
    if os.getuid() != _uid or os.geteuid() == 0:
        os._exit(97)
if _fk:
    _pid = os.fork()
    if _pid:
        while True:
            try:
                _st = os.waitpid(_pid, 0)[1]; break
            except InterruptedError:
                pass
        _c = os.waitstatus_to_exitcode(_st)
        os._exit(_c if _c >= 0 else 128 - _c)
def _closer(tok):
    def fin():
        os.write(1, b"\n" + tok + b"\n")
    return fin
_fin = _closer(_tok)
del _R, _k, _v, _uid, _gid, _np, _as, _cpu, _fs, _fk, _h, _tok, _closer
def _main(fin, src):
    # the sentinel lives only in fin's closure: not a global of __main__, not a local of the program's caller
    g = {"__name__": "__solution__", "__builtins__": __builtins__}
    try:
        code = compile(src.decode("utf-8", "replace"), "<solution>", "exec")
        del src
        exec(code, g)
    except SystemExit as e:
        sys.stderr.write("sandbox: SystemExit(%r) raised before the tests finished\n" % (e.code,))
        sys.stderr.flush(); os._exit(3)
    except BaseException:
        import traceback; traceback.print_exc(); sys.stderr.flush(); os._exit(1)
    for s in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        try:
            s.flush()
        except BaseException:
            pass
    fin()
    os._exit(0)
_main(globals().pop("_fin"), globals().pop("_src"))
'''


def _python() -> str:
    """The base interpreter (real path): the sandbox runs stdlib-only ``python -I -S``, no venv site-packages."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe)


def _env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def _bwrap_cmd(limits: SandboxLimits) -> list[str]:
    py = _python()
    prefix = os.path.realpath(sys.base_prefix)
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-user"]
    for k, v in _env().items():
        cmd += ["--setenv", k, v]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for p in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            cmd += ["--ro-bind", p, p]
    if os.path.isdir("/etc"):
        cmd += ["--ro-bind", "/etc", "/etc"]
    made: set[str] = set()
    for d in sorted({prefix, os.path.dirname(os.path.dirname(py))}):
        if d == "/usr" or d.startswith("/usr/") or d == "/etc" or d.startswith("/etc/"):
            continue
        parts = d.strip("/").split("/")
        for i in range(1, len(parts)):  # ancestors: traversable (0755) but otherwise empty
            a = "/" + "/".join(parts[:i])
            if a not in made:
                made.add(a)
                cmd += ["--perms", "0755", "--dir", a]
        cmd += ["--ro-bind", d, d]
    cmd += ["--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.memory_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp",
            "--chdir", "/tmp",
            "--", py, "-I", "-S", "-c", _RUNNER]
    return cmd


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


# ---- the sandbox kind, probed once ----
_kind: str | None = None
_kind_lock = threading.Lock()


def sandbox_kind() -> str:
    """"bubblewrap" when bwrap works here (probed once and cached), else "rlimits-only" (warns once)."""
    global _kind
    with _kind_lock:
        if _kind is None:
            reason = "bwrap not found on PATH"
            if shutil.which("bwrap") and os.environ.get("SCOREBENCH_SANDBOX") != "rlimits-only":
                r = _run(_PROBE, SandboxLimits(wall_s=20.0), "bubblewrap")
                if r.passed and r.stdout.strip() == "probe-ok":
                    _kind = "bubblewrap"
                else:
                    reason = f"bwrap probe failed ({r.status}, rc={r.returncode}): {r.stderr.strip()[-300:]}"
            elif shutil.which("bwrap"):
                reason = "SCOREBENCH_SANDBOX=rlimits-only"
            if _kind is None:
                _kind = "rlimits-only"
                msg = (f"scorebench sandbox: bubblewrap is unavailable ({reason}); falling back to 'rlimits-only', "
                       "which does NOT isolate network or filesystem. Install bubblewrap (apt-get install "
                       "bubblewrap) to grade untrusted code safely.")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                print(msg, file=sys.stderr)
        return _kind


_PROBE = "import os, socket\nprint('probe-ok')\n"


def run_program(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run one program (solution + tests) in the sandbox; passed iff it ran to the end and exited 0."""
    return _run(source, limits or SandboxLimits(), sandbox_kind())


def run_many(sources: list[str], limits: SandboxLimits | None = None, workers: int | None = None,
             progress: bool = False) -> list[SandboxResult]:
    """Run many programs in parallel (a thread pool driving one sandbox subprocess each); results in order.

    Default workers: 2 x CPU count. Measured on 2 cores, the 164 canonical HumanEval programs: 2 workers 4.1 s,
    4 workers 2.8-3.3 s, 6 or 8 workers 2.6-3.3 s (sandbox start-up is latency-bound, so 2x oversubscription
    helps; beyond it nothing is gained).
    """
    limits = limits or SandboxLimits()
    kind = sandbox_kind()
    if not sources:
        return []
    workers = workers or max(2, 2 * (os.cpu_count() or 1))
    from tqdm.auto import tqdm
    bar = tqdm(total=len(sources), desc="sandbox", disable=not progress, leave=False, unit="prog")
    out: list[SandboxResult | None] = [None] * len(sources)

    def one(i: int) -> None:
        out[i] = _run(sources[i], limits, kind)
        bar.update(1)

    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as ex:
        list(ex.map(one, range(len(sources))))
    bar.close()
    return out  # type: ignore[return-value]


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


def _run(source: str, limits: SandboxLimits, kind: str) -> SandboxResult:
    token = secrets.token_hex(16)
    slot = _take_slot()
    workdir = None
    t0 = time.monotonic()
    try:
        if kind == "bubblewrap":
            cmd, cwd = _bwrap_cmd(limits), "/"
            uid = gid = (_UID_BASE + slot) if os.geteuid() == 0 else -1
        else:
            workdir = tempfile.mkdtemp(prefix="scorebench-sbx-")
            os.chmod(workdir, 0o700)
            cmd, cwd, uid, gid = [_python(), "-I", "-S", "-c", _RUNNER], workdir, -1, -1
        header = (f"{uid} {gid} {limits.max_procs} {limits.memory_mb * 1024 * 1024} {int(limits.cpu_s)} "
                  f"{limits.memory_mb * 1024 * 1024} {0 if kind == 'bubblewrap' else 1} {token}\n").encode()
        payload = header + source.encode("utf-8", "replace")
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
