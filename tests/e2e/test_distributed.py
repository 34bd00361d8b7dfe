"""One run, N processes (issue 15): real multi-process jobs on this CPU (gloo), launched the way a user launches
them (torch.distributed.run, accelerate launch), compared with one process."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorebench import dist

HERE = Path(__file__).parent
ROOT = HERE.parents[1]  # the repository
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def torchrun(n: int, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *args]


def scorebench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "scorebench", *args]


def start(cmd, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:  # files, not pipes: progress bars could fill a pipe
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT,
                                start_new_session=True)


def finish(p: subprocess.Popen, log: Path, timeout=600) -> str:
    rc = p.wait(timeout=timeout)
    out = log.read_text()
    assert rc == 0, out[-3000:]
    return out


# ------------------------------------------------------------------------------------------- pure helpers

def test_shard_blocks_cover_items_once():
    items = list(range(7))
    parts = [dist.shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert [dist.shard(items[:1], r, 2) for r in range(2)] == [[0], []]


def test_shard_groups_keeps_an_episodes_pieces_together():
    from scorebench.training.sequences import Sequence
    seqs = [Sequence([1, 2], [0, 1], [0, 0], group=g) for g in ("a", "a", "b", "c", "c")]
    parts = [dist.shard_groups(seqs, r, 2) for r in range(2)]
    assert [[s.group for s in p] for p in parts] == [["a", "a", "b"], ["c", "c"]]


def test_rollout_in_one_process_keeps_chunks_and_order():
    seen = []
    got = dist.rollout(lambda chunk: [x * 10 for x in chunk], list(range(5)), 2, on_episodes=seen.append)
    assert got == [0, 10, 20, 30, 40] and seen == [[0, 10], [20, 30], [40]]


# ------------------------------------------------------------------------------------------- training

def _episodes(model_dir, steps=2, problems=3, k=2):
    """Sampled two-turn episodes (with the engine's ids) per step, with rewards set by hand so that every step has
    a non-zero policy gradient; plus SFT sequences."""
    from scorebench.engines import SamplingParams, get_engine
    from scorebench.protocol import ProtocolConfig, run_protocol
    from scorebench.tasks.arith import Arith
    from scorebench.training.sequences import episode_to_sequences
    engine = get_engine("hf", model_name=str(model_dir), batch_size=8, device="cpu")
    train = Arith(n_train=20, n_test=2).train()
    out = []
    for s in range(steps):
        params = SamplingParams(temperature=1.0, max_new_tokens=6, n=k, seed=100 + s)
        eps = run_protocol(engine, Arith(n_train=20, n_test=2), train[s * problems:(s + 1) * problems], params,
                           ProtocolConfig(turns=2), samples_per_problem=k, keep_ids=True, progress=False,
                           chunk_size=problems)
        for i, e in enumerate(eps):
            e.turns[0].reward, e.turns[1].reward = float(i % 3 == 0), float((i + s) % 2 == 0)
        out.append(eps)
    sft = [q for e in out[0][:5] for q in episode_to_sequences(engine.tokenizer, e, [0.0, 1.0])]
    return {"k": k, "steps": out, "sft": sft}


@pytest.mark.model
def test_two_process_training_equals_one_process(tiny_model_dir, tmp_path):
    """Two SCoRe steps (3 problems x 2 samples: ranks get 2 and 1 problems, so a per-rank loss denominator would
    show) and two SFT steps (5 sequences in batches of 4: rank 1 has nothing at step 2) give the weights of one
    process trained on the same episodes; the logged loss and gradient norm are the whole batch's."""
    import torch
    data = tmp_path / "data.pkl"
    data.write_bytes(pickle.dumps(_episodes(tiny_model_dir)))
    one, two = tmp_path / "one", tmp_path / "two"
    worker = str(HERE / "dist_worker.py")
    p1 = start([sys.executable, worker, str(tiny_model_dir), str(data), str(one)], tmp_path / "one.log")
    p2 = start(torchrun(2, worker, str(tiny_model_dir), str(data), str(two)), tmp_path / "two.log")
    finish(p1, tmp_path / "one.log")
    finish(p2, tmp_path / "two.log")
    from scorebench import models
    base = models.load(str(tiny_model_dir))[0].state_dict()
    for name in ("rl", "sft"):
        a, b = torch.load(one / f"{name}.pt"), torch.load(two / f"{name}.pt")
        assert a.keys() == b.keys()
        moved = max(float((a[n] - base[n]).abs().max()) for n in a)
        diff = max(float((a[n] - b[n]).abs().max()) for n in a)
        assert moved > 1e-3, name  # the steps changed the weights (so equality means something)
        assert diff < 1e-5, (name, diff, moved)
    la, lb = (json.loads((d / "logs.json").read_text()) for d in (one, two))
    for name in ("rl", "sft"):
        assert len(la[name]) == len(lb[name]) == 2
        for x, y in zip(la[name], lb[name]):
            for key in ("loss", "pg", "kl", "grad_norm"):
                assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), (name, key)
            for key in ("sequences", "tokens", "total_tokens"):
                assert x[key] == y[key], (name, key)
    assert la["rl"][0]["reward_t1"] == lb["rl"][0]["reward_t1"]  # rollout stats over every rank's episodes


# ------------------------------------------------------------------------------------------- evaluation

def _eval_args(model_dir, out, limit, new_tokens=8):
    return ["run", "--task", "arith", "--limit", str(limit), "--batch-size", "2", "--max-new-tokens",
            str(new_tokens), "--model", str(model_dir), "--out", str(out)]


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "episodes.jsonl").read_text().splitlines() if x.strip()]


def _same_run(a: Path, b: Path, n: int) -> None:
    ea, eb = _lines(a), _lines(b)
    assert len(eb) == n and len({e["id"] for e in eb}) == n  # each problem exactly once
    assert sorted(ea, key=lambda e: e["id"]) == sorted(eb, key=lambda e: e["id"])
    assert json.loads((a / "metrics.json").read_text()) == json.loads((b / "metrics.json").read_text())


@pytest.mark.full  # make test-full (make test keeps one two-process equivalence run)
@pytest.mark.model
def test_accelerate_launch_two_process_eval_equals_one_process(tiny_model_dir, tmp_path):
    """``accelerate launch --num_processes 2 -m scorebench run``: 9 problems in chunks of 2 (ranks take chunks
    0,2,4 and 1,3; rank 1 idles in the last round); rank 0 alone writes and prints."""
    accelerate = str(Path(sys.executable).parent / "accelerate")
    p1 = start(scorebench_cmd(*_eval_args(tiny_model_dir, tmp_path / "one", 9)), tmp_path / "one.log")
    p2 = start([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "scorebench",
                *_eval_args(tiny_model_dir, tmp_path / "two", 9)], tmp_path / "two.log")
    finish(p1, tmp_path / "one.log")
    out = finish(p2, tmp_path / "two.log")
    assert out.count("run directory:") == 1
    _same_run(tmp_path / "one", tmp_path / "two", 9)
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert "total_seconds" in cfg


def _rank_pid(launcher: subprocess.Popen, r: int) -> int | None:
    import psutil
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(r) and "scorebench" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def _wait_for(cond, timeout: float, what: str):
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill_rank1_when(launcher, cond, what) -> float:
    """SIGKILL rank 1 once ``cond()`` holds; return how long the launcher then took to exit (non-zero)."""
    _wait_for(cond, 300, what)
    pid = _rank_pid(launcher, 1)
    assert pid is not None
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    rc = launcher.wait(timeout=120)
    assert rc != 0
    return time.time() - t0


@pytest.mark.full  # make test-full (make test keeps one two-process equivalence run)
@pytest.mark.model
def test_killed_rank_ends_the_run_then_it_resumes(tiny_model_dir, tmp_path):
    """Rank 1 killed mid-evaluation: the run ends within seconds with one line from rank 0 saying why; the same
    command resumes it, and the result equals one process's."""
    n, out, log = 40, tmp_path / "two", tmp_path / "two.log"
    args = _eval_args(tiny_model_dir, out, n, new_tokens=48)
    p = start(torchrun(2, "-m", "scorebench", *args), log)
    took = _kill_rank1_when(p, lambda: (out / "episodes.jsonl").exists() and _lines(out), "the first episodes")
    text = log.read_text()
    assert took < 60, took
    assert not (out / "metrics.json").exists()  # it really was mid-run
    assert "scorebench: error: rank 0 of 2:" in text, text[-3000:]
    done = len(_lines(out))
    assert 0 < done < n
    p1 = start(scorebench_cmd(*_eval_args(tiny_model_dir, tmp_path / "one", n, new_tokens=48)), tmp_path / "one.log")
    finish(start(torchrun(2, "-m", "scorebench", *args), tmp_path / "resume.log"), tmp_path / "resume.log")
    finish(p1, tmp_path / "one.log")
    assert json.loads((out / "config.json").read_text()).get("resumed") == 1
    _same_run(tmp_path / "one", out, n)


@pytest.mark.full  # make test-full (make test keeps one two-process equivalence run)
@pytest.mark.model
def test_two_process_score_run_killed_mid_step_resumes(tiny_model_dir, tmp_path):
    """A 2-process SCoRe run killed after its first checkpoint resumes from it: every step's rollouts are logged
    exactly once (4 episodes a step from 2 ranks), the policy is saved, and every test problem is evaluated once."""
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps({"lr": 1e-3, "dtype": "float32", "temperature": 1.0, "save_every": 1,
                                  "micro_batch_size": 4,
                                  "score": {"stage1_steps": 2, "stage2_steps": 8, "problems_per_step": 2,
                                            "samples_per_problem": 2, "max_new_tokens": 24}}))
    out = tmp_path / "run"
    args = ["run", "--method", "score", "--task", "arith", "--task-arg", "n_test=4", "--preset", str(preset),
            "--max-new-tokens", "8", "--model", str(tiny_model_dir), "--out", str(out)]
    p = start(torchrun(2, "-m", "scorebench", *args), tmp_path / "a.log")
    ckpt = out / "train" / "checkpoints"
    took = _kill_rank1_when(p, lambda: any(ckpt.glob("step-*/.complete")), "the first checkpoint")
    assert took < 60
    assert not (out / "policy" / ".complete").exists(), "the run finished before the kill; the test proves nothing"
    finish(start(torchrun(2, "-m", "scorebench", *args), tmp_path / "b.log"), tmp_path / "b.log")
    steps = [json.loads(x)["step"] for x in (out / "train" / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, 11)) and all(steps.count(s) == 4 for s in set(steps))
    log = [json.loads(x) for x in (out / "train" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 11))  # steps redone after the resume are logged once
    assert all(r["sequences"] >= 4 for r in log)  # every rank's episodes (a capped turn adds a piece)
    assert (out / "policy" / ".complete").exists()
    eps = _lines(out)
    assert len(eps) == 4 and len({e["id"] for e in eps}) == 4


@pytest.mark.full  # make test-full (make test keeps one two-process equivalence run)
@pytest.mark.model
def test_two_process_star_samples_the_same_traces(tiny_model_dir, tmp_path):
    """STaR's data generation dealt over 2 ranks (130 problems: chunks of 64, 64, 2) samples exactly the traces one
    process samples (2 samples each at T = 0.7, each chunk's own streams); rank 0 alone writes the dataset. The
    random tiny model finds no wrong→right trace, so both runs take the untrained-policy path (rank 0 saves, every
    rank loads)."""
    def args(out):
        return ["run", "--method", "star", "--task", "arith", "--task-arg", "n_test=3", "--preset", "cpu-small",
                "--method-arg", "n_problems=130", "--max-new-tokens", "6", "--model", str(tiny_model_dir),
                "--out", str(out)]
    p1 = start(scorebench_cmd(*args(tmp_path / "one")), tmp_path / "one.log")
    p2 = start(torchrun(2, "-m", "scorebench", *args(tmp_path / "two")), tmp_path / "two.log")
    finish(p1, tmp_path / "one.log")
    finish(p2, tmp_path / "two.log")
    stats = [json.loads((tmp_path / d / "dataset_stats.json").read_text()) for d in ("one", "two")]
    assert stats[0] == stats[1] and stats[0]["episodes"] == 260 and sum(stats[0]["sampled"].values()) == 260
    _same_run(tmp_path / "one", tmp_path / "two", 3)


@pytest.mark.full  # make test-full (make test keeps one two-process equivalence run)
@pytest.mark.model
def test_ranks_on_a_fresh_machine_convert_the_embedded_model_once(tmp_path):
    """Every rank resolves the embedded model at start; on a fresh cache they must not convert it over each other:
    one converts (under a file lock), the other waits and loads the result."""
    env = {**ENV, "SCOREBENCH_CACHE": str(tmp_path / "cache")}
    code = "from scorebench import models; print('PATH', models.resolve(None))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("converting the embedded GGUF") for o in outs) == 1, outs
    paths = {line for o in outs for line in o.splitlines() if line.startswith("PATH")}
    assert len(paths) == 1
    assert (Path(paths.pop().split(" ", 1)[1]) / ".complete").exists()
