"""The commands that start a sandbox: the in-sandbox runner (``RUNNER``: limits, uid drop, the sentinel) and the
bubblewrap command line around it (``bwrap_cmd``); the rlimits-only fallback runs the runner bare."""
from __future__ import annotations

import os
import sys

from .limits import SandboxLimits

# The in-sandbox runner. stdin: one header line "uid gid nproc as_bytes cpu fsize fork token" then the program.
# fork=1 (the rlimits-only fallback): the program runs in a forked child, so os.getppid() is this runner, not the
# harness; the runner relays the child's exit status.
RUNNER = r'''
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


def python() -> str:
    """The base interpreter (real path): the sandbox runs stdlib-only ``python -I -S``, no venv site-packages."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe)


def env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


def bwrap_cmd(limits: SandboxLimits) -> list[str]:
    py = python()
    prefix = os.path.realpath(sys.base_prefix)
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-user"]
    for k, v in env().items():
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
            "--", py, "-I", "-S", "-c", RUNNER]
    return cmd
