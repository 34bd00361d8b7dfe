"""Every user error is one line and exit 2, found before any model loads or any file is written (issue 13).

The model loader is replaced by one that fails the test, so a check that comes too late shows up as a failure
rather than as a slow run; every case also asserts that its output path was not created.
"""
import json
import os

import pytest

from scorebench import models
from scorebench.cli import build_parser, main


def one_line_error(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


RUN = ["run", "--task", "arith", "--limit", "2"]


@pytest.mark.parametrize("args,needle", [
    (RUN + ["--task-arg", "steps=abc", "--out", "o"], "--task-arg steps expects an integer, got 'abc'"),
    (RUN + ["--task-arg", "steps=1.5", "--out", "o"], "--task-arg steps expects an integer, got 1.5"),
    (RUN + ["--task-arg", "bogus=1", "--out", "o"], "task 'arith' takes no argument 'bogus'"),
    (RUN + ["--out", "afile/o"], "--out afile/o: afile is a file, not a directory"),
    (RUN + ["--out", "afile"], "--out afile is a file, not a directory"),
    (RUN + ["--method", "base", "--preset", "cpu-small", "--out", "o"], "method 'base' does not train"),
    (RUN + ["--method", "self-refine", "--preset", "missing.json", "--out", "o"], "'self-refine' does not train"),
    (RUN + ["--method", "base", "--method-arg", "lr=1", "--out", "o"], "takes no --preset or --method-arg"),
    (RUN + ["--method", "score", "--preset", "missing.json", "--out", "o"], "unknown preset 'missing.json'"),
    (RUN + ["--method", "star", "--method-arg", "bogus=1", "--out", "o"], "unknown method argument 'bogus'"),
    (RUN + ["--method", "pair-sft", "--method-arg", "lr=fast", "--out", "o"], "method 'pair-sft'"),
    (RUN + ["--method", "base", "--train-task", "arith", "--out", "o"], "--train-task: method 'base' does not train"),
    (RUN + ["--method", "star", "--task", "humaneval", "--out", "o"], "pass --train-task"),
    (RUN + ["--batch-size", "0", "--out", "o"], "--batch-size must be >= 1, got 0"),
    (RUN + ["--compute-dtype", "fp8", "--out", "o"], "--compute-dtype must be one of auto, float32, bfloat16"),
    (RUN + ["--model", "runs/nonexistent", "--out", "o"], "model path 'runs/nonexistent' does not exist"),
    (["scaling", "--task", "arith", "--limit", "-5", "--out", "o"], "--limit must be >= 1, got -5"),
    (["scaling", "--task", "arith", "--limit", "0", "--out", "o"], "--limit must be >= 1, got 0"),
    (["scaling", "--task", "humaneval", "--out", "o"], "math-kind task"),
    (["reproduce", "--table", "2", "--dry-run", "--limit", "0"], "--limit must be >= 1, got 0"),
    (["reproduce", "--table", "2", "--dry-run", "--task", "nope"], "unknown task 'nope'"),
    (["reproduce", "--table", "2", "--out", "afile"], "--out afile is a file"),
    (["bench", "--out", "afile/bench.md"], "afile is a file, not a directory"),
])
def test_user_error_is_one_line_before_any_work(args, needle, no_model, capsys):
    err = one_line_error(args, capsys)
    assert needle in err
    assert not (no_model / "o").exists() and not any((no_model / "runs").iterdir())


def test_unwritable_out_is_refused_before_any_work(no_model, capsys, monkeypatch):
    """A read-only file system: ``os.access`` says so even to root (which these tests may run as)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) in (".", str(no_model)) else real(p, mode))
    assert "cannot create it, . is not writable" in one_line_error(RUN + ["--out", "o"], capsys)


def test_corrected_command_is_not_blocked(no_model, capsys, monkeypatch):
    """A bad preset used to be found inside train(), after config.json was written, which then blocked the
    corrected command ("holds a run with a different config"); now nothing is written, so the fix just runs."""
    one_line_error(RUN + ["--method", "star", "--preset", "missing.json", "--out", "o"], capsys)
    from scorebench.runner import RunConfig, validate
    plan = validate(RunConfig(method="star", task="arith", limit=2, model=None), "o")
    assert not plan.finished and not (no_model / "o").exists()


def test_missing_paths_are_never_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for bad in ["runs/nonexistent", "./x", "../x", "/nonexistent/x", "~/nonexistent-scorebench", "a/b/c", "a/"]:
        with pytest.raises(models.ModelError, match="does not exist"):
            models.check(bad)
    assert models.check("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"  # hub-shaped: left to the hub
    assert models.check("gpt2") == "gpt2"


def test_reproduce_mbpp_r_of_a_trained_row_without_policy(no_model, capsys):
    """Table 3's MBPP-R column evaluates each trained row's policy; a finished row shipped without weights cannot
    make it: one line, before any row runs (it used to train on mbpp-r and raise NotImplementedError)."""
    from scorebench.protocol import Episode, Turn
    from scorebench.reproduce import TABLES, find_run, row_configs
    from scorebench.runner import RunConfig
    from scorebench.tasks.code import HumanEval
    first = HumanEval().test()[0]["id"]
    base = RunConfig(task="humaneval", limit=1, method_args={"preset": "cpu-small"})
    for _, _, cfg, _ in row_configs(TABLES[3], base):  # every row finished, no policy/
        d = find_run(no_model / "runs", cfg)
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"config": cfg.record(), "key": cfg.key(), "total_seconds": 1}))
        (d / "episodes.jsonl").write_text(json.dumps(Episode(first, [Turn("p", "r", 0.0)] * 2).to_json()) + "\n")
    err = one_line_error(["reproduce", "--table", "3", "--limit", "1", "--runs-dir", "runs", "--out", "t"], capsys)
    assert "MBPP-R column of row 'pair-sft' needs its trained policy" in err and "policy" in err
    assert not (no_model / "t").exists()


def test_help_shows_defaults_and_every_flag_has_help():
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "cmd").choices
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, f"scorebench {name} {action.option_strings or action.dest} has no help"
    text = subs["run"].format_help()
    flat = " ".join(text.split())
    assert "(default: 32 on a CPU, 256 on CUDA)" in flat and "(default: float32)" in flat and "--compute-dtype" in text


def test_bench_and_reproduce_do_not_write_into_results_by_default(tmp_path, monkeypatch, capsys):
    assert not build_parser().parse_args(["bench"]).out.startswith("results/")
    seen = {}

    def fake(number, base, runs_dir, out, **kw):
        seen["out"] = out
        out.mkdir(parents=True)
        (out / f"table{number}.md").write_text("table\n")
    monkeypatch.setattr("scorebench.reproduce.reproduce", fake)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--table", "2"]) == 0
    assert not str(seen["out"]).startswith("results")
    assert main(["reproduce", "--table", "2", "--out", "results/table2-arith"]) == 0  # explicit: still works
    assert str(seen["out"]) == "results/table2-arith"


def test_help_claims_config_json_only_where_one_is_written():
    subs = next(a for a in build_parser()._actions if a.dest == "cmd").choices
    for action in subs["bench"]._actions:
        assert "records" not in (action.help or ""), action.help  # bench writes only its markdown table
