"""Runtime I/O errors are one line and leave the run resumable; ``--compute-dtype`` reaches the engine and the
record (issue 13). On a tiny random model, so each run takes about a second."""
import errno
import json

import pytest

from scorebench.cli import main
from scorebench.rundir import RunDir


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return str(tiny_model_dir)


def _run(model, out, *extra):
    return ["run", "--task", "arith", "--model", model, "--limit", "3", "--max-new-tokens", "4", "--batch-size", "1",
            "--out", str(out), *extra]


def test_disk_full_mid_run_is_one_line_and_resumable(tiny_model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "D"
    real = RunDir.append_episodes
    calls = []

    def full_disk(self, episodes):  # the second chunk's append runs out of space half-way through its line
        calls.append(1)
        if len(calls) == 2:
            with open(self.episodes_path, "a") as f:
                f.write('{"id": "test/1", "tur')
            raise OSError(errno.ENOSPC, "No space left on device", str(self.episodes_path))
        return real(self, episodes)
    monkeypatch.setattr(RunDir, "append_episodes", full_disk)
    rc = main(_run(tiny_model, out))
    err = capsys.readouterr().err
    ours = [ln for ln in err.splitlines() if ln.startswith("scorebench:")]  # the rest is progress bars
    assert rc == 1 and len(ours) == 1 and err.count("scorebench:") == 1 and "Traceback" not in err, err
    assert "No space left on device" in ours[0] and "rerun the same command to resume" in ours[0]
    monkeypatch.setattr(RunDir, "append_episodes", real)
    assert main(_run(tiny_model, out)) == 0  # the same command resumes
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["test/0", "test/1", "test/2"]


def test_compute_dtype_reaches_the_engine_and_the_record(tiny_model, tmp_path, capsys):
    assert main(_run(tiny_model, tmp_path / "fp32", "--compute-dtype", "float32")) == 0
    rec = json.loads((tmp_path / "fp32" / "config.json").read_text())
    assert rec["config"]["dtype"] == "float32" and rec["config"]["compute_dtype"] == "float32"
    assert rec["engine"]["dtype"] == "float32" and rec["engine"]["compute_dtype"] == "float32"
    assert main(_run(tiny_model, tmp_path / "bf16", "--compute-dtype", "bfloat16")) == 0
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["engine"]["compute_dtype"] == "bfloat16"


def test_compute_dtype_keeps_the_keys_of_recorded_runs():
    """A run recorded before --compute-dtype existed used "auto": its key (how reproduce finds and reuses it) must
    not change; asking for another compute dtype is another run."""
    from scorebench.runner import RunConfig
    old = {"method": "base", "task": "arith", "train_task": None, "model": None, "engine": "hf", "dtype": "float32",
           "limit": None, "turns": 2, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 160, "seed": 0,
           "batch_size": 32, "task_args": {}, "method_args": {}}  # results/runs/base-arith-cap160, key 891dbabc
    assert RunConfig(**old, compute_dtype="auto", rules=1).key() == "891dbabc"
    # the same config under today's rules (strict grading, fp32 evaluation) is another run with another key
    assert RunConfig(**old).key() != "891dbabc" and RunConfig(**old).record()["rules"] == 2
    assert RunConfig(**old, compute_dtype="auto", rules=1).record() == old
    assert RunConfig(**old, compute_dtype="float32").key() != "891dbabc"
