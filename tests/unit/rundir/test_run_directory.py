"""The run directory: one writer (a flock on the directory), episodes de-duplicated by id when read, a truncated
tail tolerated and corruption refused, a different config refused, incomplete runs marked in tables, one file mode
for every file (issue 13)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from scorebench.cli import main
from scorebench.protocol import Episode, Turn
from scorebench.rundir import RunDir, RunDirBusy, RunDirError


def _ep(i, r=1.0):
    return Episode(id=str(i), turns=[Turn("p", "r", r), Turn("p2", "r2", r)])


@pytest.mark.full  # two processes: make test-full
@pytest.mark.model
def test_two_processes_into_one_out(tmp_path):
    """Two identical runs started together into one --out: one runs, the other refuses with one line (exit 2) —
    or, if it came late enough, reuses the finished run. Either way the directory holds each episode once."""
    out = tmp_path / "D"
    cmd = [sys.executable, "-m", "scorebench.cli", "run", "--task", "arith", "--limit", "3", "--max-new-tokens", "16",
           "--batch-size", "3", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"stderr{i}" for i in range(2)]  # files, not pipes: progress bars could fill a pipe
    procs = []
    for log in logs:
        with open(log, "w") as f:  # the child keeps its own copy of the descriptor
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, env=env))
    results = [(p.wait(timeout=600), log.read_text()) for p, log in zip(procs, logs)]
    assert 0 in [rc for rc, _ in results], results
    for rc, err in results:
        if rc != 0:
            assert rc == 2 and "is in use by another scorebench process" in err, err
            assert len(err.strip().splitlines()) == 1, err
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len({json.loads(x)["id"] for x in lines}) == 3
    assert json.loads((out / "metrics.json").read_text())["n"] == 3


def test_held_lock_refuses_a_second_writer_before_any_work(tmp_path, capsys, monkeypatch):
    from scorebench import models

    def refuse(*a, **k):
        raise AssertionError("a model was loaded while another process held the run directory")
    monkeypatch.setattr(models, "load", refuse)
    out = tmp_path / "D"
    with RunDir(out).lock():  # flock conflicts between open file descriptions, even within one process
        rc = main(["run", "--task", "arith", "--limit", "2", "--out", str(out)])
        err = capsys.readouterr().err
        with pytest.raises(RunDirBusy):
            with RunDir(out).lock():
                pass
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "is in use by another scorebench process" in err
    assert list(out.iterdir()) == []
    with RunDir(out).lock():  # released when the holder leaves
        pass


def test_lock_dies_with_its_holder(tmp_path):
    """A killed run never blocks its resume: the kernel drops the flock with the process."""
    out = tmp_path / "D"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom scorebench.rundir import RunDir\n"
                               f"with RunDir({str(out)!r}).lock():\n    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunDirBusy):
        with RunDir(out).lock():
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    with RunDir(out).lock():
        pass


def test_duplicate_episodes_count_once(tmp_path, capsys):
    """A directory that an older version let two processes fill (every episode twice) reports n = 10, not 20."""
    rd = RunDir(tmp_path / "D")
    rd.init({"config": {"method": "base", "task": "arith", "seed": 0}, "total_seconds": 1.0})
    eps = [_ep(i, float(i % 2)) for i in range(10)]
    rd.append_episodes(eps)
    rd.append_episodes(eps)
    assert [e.id for e in rd.episodes()] == [str(i) for i in range(10)]
    assert main(["table", str(rd.path)]) == 0
    assert "| base | arith | 10 |" in capsys.readouterr().out


def test_table_marks_incomplete_runs(tmp_path, capsys):
    killed = RunDir(tmp_path / "killed")  # 5 of 20 done, no total_seconds: stopped before the end
    killed.init({"config": {"method": "base", "task": "arith", "seed": 0}, "n_problems": 20})
    killed.append_episodes([_ep(i) for i in range(5)])
    old = RunDir(tmp_path / "old")  # recorded before n_problems existed
    old.init({"config": {"method": "self-refine", "task": "arith", "seed": 0}})
    old.append_episodes([_ep(i) for i in range(5)])
    done = RunDir(tmp_path / "done")
    done.init({"config": {"method": "star", "task": "arith", "seed": 0}, "n_problems": 5, "total_seconds": 3.0})
    done.append_episodes([_ep(i) for i in range(5)])
    assert main(["table", str(killed.path), str(old.path), str(done.path)]) == 0
    out = capsys.readouterr().out
    assert "| base | arith | 5 of 20 (incomplete) |" in out
    assert "| self-refine | arith | 5 (incomplete) |" in out
    assert "| star | arith | 5 |" in out and "incomplete: the run stopped" in out


def test_every_run_file_has_one_mode(tmp_path):
    """config.json, metrics.json and table.md were 0600 (mkstemp) while episodes.jsonl was 0644."""
    umask = os.umask(0o022)
    try:
        rd = RunDir(tmp_path / "D")
        rd.init({"config": {"a": 1}})
        rd.append_episodes([_ep(1)])
        rd.write_metrics({"n": 1})
        rd.write_text("table.md", "t\n")
    finally:
        os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in rd.path.iterdir()}
    assert modes == {n: "0o644" for n in ("config.json", "episodes.jsonl", "metrics.json", "table.md")}


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    rd = RunDir(tmp_path / "D")
    rd.init({"config": {"a": 1}})
    before = rd.config_path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        rd.update_config(x=1)
    assert rd.config_path.read_bytes() == before and sorted(p.name for p in rd.path.iterdir()) == ["config.json"]


def test_episodes_tolerate_truncated_tail_but_not_corruption(tmp_path):
    rd = RunDir(tmp_path)
    rd.init({"config": {"a": 1}})
    rd.append_episodes([Episode(id=str(i), turns=[Turn("p", "r", 1.0)]) for i in (1, 2)])
    with open(rd.episodes_path, "a") as f:
        f.write('{"id": "3", "tur')  # a kill mid-write
    assert len(rd.episodes()) == 2
    rd.episodes(repair=True)
    assert rd.episodes_path.read_text().endswith("}\n")
    lines = rd.episodes_path.read_text().splitlines()
    rd.episodes_path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(RunDirError, match=r"episodes.jsonl:2: malformed"):
        rd.episodes()


def test_a_resumed_run_records_each_session(tmp_path):
    """A run that spans sessions may change machine or commit between them: each session is kept, with the
    seconds it recorded; one killed before recording any keeps none, and the top level stays the first's."""
    rd = RunDir(tmp_path)
    first = {"config": {"a": 1}, "started": "t0", "git_commit": "c0", "machine": {"cpus": 2}, "argv": ["x"]}
    rd.init(first)
    assert "sessions" not in rd.config()  # a run of one session: its top level says it all
    rd.record_seconds(train_seconds=5.0, total_seconds=9.0)
    rd.init({**first, "started": "t1", "git_commit": "c1", "machine": {"cpus": 16}})  # killed: records nothing
    rd.init({**first, "started": "t2", "git_commit": "c2", "machine": {"cpus": 2}})
    rd.record_seconds(total_seconds=3.0)
    cfg = rd.config()
    assert cfg["resumed"] == 2 and cfg["started"] == "t0" and cfg["git_commit"] == "c0"
    assert [(s["started"], s["git_commit"], s["machine"]["cpus"]) for s in cfg["sessions"]] == [
        ("t0", "c0", 2), ("t1", "c1", 16), ("t2", "c2", 2)]
    assert [s.get("total_seconds") for s in cfg["sessions"]] == [9.0, None, 3.0]
    assert cfg["total_seconds"] == 3.0 and cfg["train_seconds"] == 5.0


def test_wall_seconds_add_up_sessions_and_say_when_they_are_a_lower_bound(tmp_path):
    """A table's wall time is the run's, not its last session's: sessions add up; a killed session counts its
    training seconds and makes the sum a lower bound, and so does a resume from before sessions were recorded."""
    rd = RunDir(tmp_path / "a")
    rd.init({"config": {"a": 1}, "started": "t0"})
    rd.record_seconds(train_seconds=5.0, total_seconds=9.0)
    assert rd.wall_seconds() == (9.0, 1, True)
    rd.init({"config": {"a": 1}, "started": "t1"})
    rd.record_seconds(total_seconds=3.0)
    assert rd.wall_seconds() == (12.0, 2, True)
    rd.init({"config": {"a": 1}, "started": "t2"})
    rd.record_seconds(train_seconds=7.0)  # killed before its total
    rd.init({"config": {"a": 1}, "started": "t3"})
    rd.record_seconds(total_seconds=2.0)
    assert rd.wall_seconds() == (21.0, 4, False)
    old = RunDir(tmp_path / "b")  # resumed twice before sessions existed: training 9367 s, then a 408 s test
    old.init({"config": {"a": 1}})
    old.update_config(resumed=2, train_seconds=9367.4, total_seconds=408.3)
    assert old.wall_seconds() == (9367.4, 3, False)
    unfinished = RunDir(tmp_path / "c")
    unfinished.init({"config": {"a": 1}})
    assert unfinished.wall_seconds() == (0.0, 1, False)


def test_rundir_refuses_a_different_config(tmp_path):
    rd = RunDir(tmp_path)
    rd.init({"config": {"a": 1}})
    rd.init({"config": {"a": 1}})  # same config: resumable
    assert rd.config()["resumed"] == 1
    with pytest.raises(RunDirError, match="differs in: a"):
        rd.init({"config": {"a": 2}})
