"""The CLI end to end on the embedded model: bad input is one line, a run resumes (also after SIGKILL) and tables."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scorebench.cli import main
from scorebench.rundir import RunDir


def run_cli(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("args,needle", [
    (["run", "--task", "nope"], "unknown task 'nope'"),
    (["run", "--task", "arith", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--task", "arith", "--model", "/does/not/exist"], "does not exist"),
    (["run", "--task", "arith", "--turns", "0"], "--turns must be >= 1"),
    (["run", "--task", "arith", "--temperature", "-1"], "temperature must be >= 0"),
    (["run", "--task", "arith", "--task-arg", "steps"], "expects key=value"),
    (["run", "--task", "arith", "--engine", "nope"], "unknown engine 'nope'"),
    (["table", "/does/not/exist"], "is not a directory"),
])
def test_bad_input_one_line_error(args, needle, capsys):
    rc, out, err = run_cli(args, capsys)
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_flag_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--task", "arith", "--limit", "abc"])
    assert e.value.code == 2


def test_vllm_engine_fails_clearly_on_cpu(capsys):
    rc, out, err = run_cli(["run", "--task", "arith", "--engine", "vllm", "--limit", "1"], capsys)
    assert rc == 2 and "vllm" in err and "GPU" in err


@pytest.mark.model
def test_run_resume_and_table(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--task", "arith", "--limit", "4", "--max-new-tokens", "12", "--batch-size", "4",
            "--out", str(out)]
    rc, stdout, err = run_cli(args, capsys)
    assert rc == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["task"] == "arith" and cfg["versions"]["torch"] and cfg["config"]["seed"] == 0
    assert cfg["machine"]["cpu"] and (cfg["peak_rss_gb"] is None or cfg["peak_rss_gb"] > 0.2)  # the model is loaded
    assert cfg["env"].get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")  # recorded when set, else absent
    full = (out / "episodes.jsonl").read_text().splitlines()
    assert len(full) == 4
    ep0 = json.loads(full[0])
    assert len(ep0["turns"]) == 2 and ep0["turns"][1]["prompt"].startswith("There might be an error")
    metrics = json.loads((out / "metrics.json").read_text())
    # Simulate a kill after 2 episodes, mid-write of the third; the same command resumes and completes.
    (out / "episodes.jsonl").write_text("\n".join(full[:2]) + "\n" + full[2][:20])
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    again = (out / "episodes.jsonl").read_text().splitlines()
    assert again == full  # greedy + same seed: the resumed episodes equal the uninterrupted ones
    assert json.loads((out / "metrics.json").read_text()) == metrics
    resumed = json.loads((out / "config.json").read_text())  # both sessions recorded, each with its seconds
    assert [s["started"] for s in resumed["sessions"]][0] == cfg["started"] == resumed["started"]
    assert len(resumed["sessions"]) == 2 and resumed["sessions"][0]["total_seconds"] == cfg["total_seconds"]
    assert resumed["sessions"][1]["total_seconds"] == resumed["total_seconds"]
    rc, table, _ = run_cli(["table", str(out)], capsys)
    assert rc == 0 and table == (out / "table.md").read_text()
    assert f"| base | arith | 4 | {100 * metrics['acc_t1']:.1f}" in table
    rc, table, _ = run_cli(["table", "--diagnostics", str(out), str(out)], capsys)  # variants: labelled by dir
    assert rc == 0 and table.count("| run | arith | 4 |") == 2 and "cut t1" in table


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "scorebench.cli", "run", "--task", "arith", "--limit", "40", "--batch-size", "8",
           "--max-new-tokens", "16", "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "episodes.jsonl").exists() and (out / "episodes.jsonl").stat().st_size > 0:
            break
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    n_before = len(RunDir(out).episodes())
    assert 0 < n_before < 40
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    eps = RunDir(out).episodes()
    assert len(eps) == 40 and len({e.id for e in eps}) == 40
