"""``reproduce --jobs N``: unfinished rows run side by side as separate processes, N at a time; failures are named
with their logs; an interrupt stops every child; only unfinished runs are started."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from scorebench import jobs as J
from scorebench import reproduce as R
from scorebench.checks import UsageError
from scorebench.cli import main as cli_main
from scorebench.jobs import Job, RunsFailed, run_side_by_side
from scorebench.reproduce import TABLES, find_run, reproduce, seed_rows
from scorebench.training import plan as training_plan


def _job(tmp_path, name, seconds=0.4, rc=0, say=""):
    """A child that records when it ran and the threads it was given, sleeps, prints ``say`` and exits ``rc``."""
    code = (f"import os, sys, time; t0 = time.time(); time.sleep({seconds}); print({say!r}, flush=True); "
            f"open({str(tmp_path / (name + '.t'))!r}, 'w').write(f'{{t0}} {{time.time()}} "
            f"{{os.environ.get(\"OMP_NUM_THREADS\")}}'); sys.exit({rc})")
    return Job(name, [sys.executable, "-c", code])


def _intervals(tmp_path, names):
    out = {}
    for n in names:
        a, b, threads = (tmp_path / f"{n}.t").read_text().split()
        out[n] = (float(a), float(b), threads)
    return out


def test_at_most_n_at_a_time_and_each_gets_its_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    names = [f"j{i}" for i in range(5)]
    run_side_by_side([_job(tmp_path, n) for n in names], 2, tmp_path / "logs", threads=3, progress=False,
                     poll=0.05)
    iv = _intervals(tmp_path, names)
    assert {t for _, _, t in iv.values()} == {"3"}
    events = sorted([(a, 1) for a, _, _ in iv.values()] + [(b, -1) for _, b, _ in iv.values()])
    live, most = 0, 0
    for _, d in events:
        live += d
        most = max(most, live)
    assert most == 2  # side by side, never three
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [f"{n}.log" for n in names]


def test_a_callers_thread_count_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    run_side_by_side([_job(tmp_path, "a", 0.0)], 2, tmp_path / "logs", threads=1, progress=False, poll=0.05)
    assert _intervals(tmp_path, ["a"])["a"][2] == "7"


def test_a_failure_is_named_with_its_log_and_the_others_still_run(tmp_path):
    jobs = [_job(tmp_path, "bad", 0.0, rc=3, say="ValueError: boom"), _job(tmp_path, "ok1"), _job(tmp_path, "ok2")]
    with pytest.raises(RunsFailed) as e:
        run_side_by_side(jobs, 2, tmp_path / "logs", progress=False, poll=0.05)
    assert [(j.name, rc) for j, rc, _ in e.value.failed] == [("bad", 3)]
    assert "bad (exit 3" in str(e.value) and "ValueError: boom" in str(e.value)
    assert (tmp_path / "ok1.t").exists() and (tmp_path / "ok2.t").exists()
    with pytest.raises(ValueError, match="--jobs must be at least 1"):
        run_side_by_side(jobs, 0, tmp_path / "logs", progress=False)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_an_interrupt_stops_every_child(tmp_path, monkeypatch, sigint_ignored):
    """``sigint_ignored``: the caller was started in the background (``nohup scorebench reproduce ... &``), where a
    shell starts commands with SIGINT ignored — children used to inherit that, ignore the stop and be killed only
    after a minute each."""
    code = (f"import os, time; open({str(tmp_path)!r} + f'/{{os.getpid()}}.pid', 'w').close(); time.sleep(120)")
    jobs = [Job(f"long{i}", [sys.executable, "-c", code]) for i in range(3)]
    real_sleep, calls = time.sleep, []

    def sleep(s):
        calls.append(s)
        if len(list(tmp_path.glob("*.pid"))) == 2:  # both children are up: the user presses Ctrl-C
            raise KeyboardInterrupt
        real_sleep(0.05)
    monkeypatch.setattr(J, "time", SimpleNamespace(sleep=sleep))  # jobs' own clock only (Popen.wait sleeps too)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.default_int_handler)
    try:
        t0 = time.time()
        with pytest.raises(KeyboardInterrupt):
            run_side_by_side(jobs, 2, tmp_path / "logs", progress=False)
        assert time.time() - t0 < 30
        assert signal.getsignal(signal.SIGINT) == (signal.SIG_IGN if sigint_ignored else signal.default_int_handler)
    finally:
        signal.signal(signal.SIGINT, before)
    pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2  # the third never started
    for pid in pids:  # reaped: gone from the process table
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_stops_every_child_too(tmp_path):
    """``kill PID`` of a backgrounded ``reproduce --jobs``: the children (each in its own session, so no signal to
    the parent's group reaches them) are stopped, not left running as orphans."""
    child = f"import os, time; open({str(tmp_path)!r} + f'/{{os.getpid()}}.pid', 'w').close(); time.sleep(120)"
    parent = textwrap.dedent(f"""
        import signal, sys
        from pathlib import Path
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts `... &`
        from scorebench.jobs import Job, run_side_by_side
        jobs = [Job("long%d" % i, [sys.executable, "-c", {child!r}]) for i in range(2)]
        try:
            run_side_by_side(jobs, 2, Path({str(tmp_path / "logs")!r}), progress=False, poll=0.05)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent])
    pids = []
    try:
        deadline = time.time() + 60
        while len(pids) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            pids = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert len(pids) == 2, "the children did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
        deadline = time.time() + 10
        while not all(_gone(pid) for pid in pids) and time.time() < deadline:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in pids), "children outlived the parent"
    finally:
        proc.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_reproduce_runs_only_the_unfinished_rows_side_by_side(tmp_path, table4, table4_run, monkeypatch):
    base, runs = table4
    rows = {m: cfgs for m, _, cfgs in seed_rows(TABLES[4], base, (0, 1, 2), ("score",))}
    missing = [rows["score"][2], rows["score-no-stage1"][0]]
    for cfg in missing:
        shutil.rmtree(find_run(runs, cfg))
    started = []

    def fake(jobs, n, log_dir, threads=None, progress=True):
        started.append((jobs, n, log_dir, threads))
        for cfg in missing:  # what the child processes would have left: finished runs
            table4_run(runs, cfg)
    monkeypatch.setattr(R, "run_side_by_side", fake)
    monkeypatch.setattr(training_plan, "available_gb", lambda: 100.0)
    out = tmp_path / "table"
    result = reproduce(4, base, runs, out, progress=False, seeds=(0, 1, 2), rows=("score",), jobs=2)
    (jobs, n, log_dir, threads), = started
    assert [j.name for j in jobs] == [find_run(runs, c).name for c in missing] and n == 2
    assert log_dir == out / "logs" and threads == max(1, (os.cpu_count() or 1) // 2)
    argv = jobs[0].argv
    assert argv[:4] == [sys.executable, "-m", "scorebench", "run"] and "--seed" in argv and "2" in argv
    assert argv[argv.index("--out") + 1] == str(find_run(runs, missing[0]))
    assert result["rows"][0]["metrics"]["delta"] == pytest.approx(0.1)  # the table is made from them all


def test_jobs_that_would_not_fit_in_memory_are_refused_up_front(tmp_path, table4, monkeypatch):
    base, runs = table4
    for cfg in seed_rows(TABLES[4], base, (0, 1, 2), ("score",))[0][2][1:]:
        shutil.rmtree(find_run(runs, cfg))  # seeds 1 and 2 to run
    monkeypatch.setattr(R, "run_side_by_side", lambda *a, **k: pytest.fail("started runs that do not fit"))
    peak = training_plan.EMBEDDED_PEAK_GB
    monkeypatch.setattr(training_plan, "available_gb", lambda: 1.5 * peak)  # one fits, two do not
    with pytest.raises(UsageError, match="--jobs 2: 2 runs side by side"):
        reproduce(4, base, runs, tmp_path / "t", progress=False, seeds=(0, 1, 2), rows=("score",), jobs=2)
    with pytest.raises(UsageError, match="--jobs must be >= 1"):
        reproduce(4, base, runs, tmp_path / "t", progress=False, jobs=0)


def test_cli_passes_jobs(monkeypatch, capsys, tmp_path):
    got = {}

    def fake(number, base, runs_dir, out, seeds=(), rows=(), jobs=1, finished_only=False):
        got["jobs"], got["finished_only"] = jobs, finished_only
        out.mkdir(parents=True, exist_ok=True)
        (out / f"table{number}.md").write_text("t\n")
    monkeypatch.setattr(R, "reproduce", fake)
    assert cli_main(["reproduce", "--table", "2", "--jobs", "2", "--out", str(tmp_path / "o")]) == 0
    assert got == {"jobs": 2, "finished_only": False}
    assert cli_main(["reproduce", "--table", "2", "--finished-only", "--out", str(tmp_path / "o")]) == 0
    assert got == {"jobs": 1, "finished_only": True}
