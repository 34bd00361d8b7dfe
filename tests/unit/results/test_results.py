"""``scorebench.results.load``: run directories as DataFrames (one row per run, or per episode), checked against
a hand-made run directory with hand-counted values and against a shipped run; the markdown table written
through it is the shipped one, byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scorebench import results
from scorebench.tables import table_from_runs

SHIPPED = Path(__file__).resolve().parents[3] / "results" / "runs" / "base-arith-limit20"


def turn(reward: float, finish: str = "stop", n_tokens: int = 10, response: str = "x") -> dict:
    return {"prompt": "p", "response": response, "reward": reward, "finish_reason": finish, "n_tokens": n_tokens}


def make_run(path: Path, episodes: list[dict], **config) -> Path:
    """A run directory as the runner leaves it: config.json and episodes.jsonl."""
    path.mkdir(parents=True)
    cfg = {"config": {"method": "score", "task": "arith", "seed": 3, "lr": 1e-5}, "method_config": {"alpha": 10.0},
           "n_problems": 4, "total_seconds": 12.5, **config}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    # problem a: wrong -> right (cut first attempt); b: right -> right; c: right -> wrong; d: wrong -> wrong
    eps = [{"id": "a", "turns": [turn(0.0, "length", 64), turn(1.0, response="y")], "meta": {"steps": 1}},
           {"id": "b", "turns": [turn(1.0, n_tokens=20), turn(1.0, n_tokens=20)], "meta": {"steps": 1}},
           {"id": "c", "turns": [turn(1.0), turn(0.0, response="z")], "meta": {"steps": 2}},
           {"id": "d", "turns": [turn(0.0, n_tokens=6), turn(0.0, n_tokens=30)], "meta": {"steps": 2}}]
    return make_run(tmp_path / "score-run", eps)


def test_one_row_per_run(run):
    df = results.load([run])
    assert len(df) == 1
    r = df.iloc[0]
    assert (r["run"], r["method"], r["task"], r["seed"]) == ("score-run", "score", "arith", 3)
    assert r["n"] == 4 and r["turns"] == 2
    assert r["acc_t1"] == 0.5 and r["acc_t2"] == 0.5 and r["delta"] == 0.0  # right first: b, c; second: a, b
    assert r["delta_i2c"] == 0.25 and r["delta_c2i"] == 0.25  # a, c
    assert r["truncated_t1"] == 0.25 and r["truncated_t2"] == 0.0
    assert r["tokens_t1"] == (64 + 20 + 10 + 6) / 4 and r["tokens_t2"] == (10 + 20 + 10 + 30) / 4
    assert r["n_uncut"] == 3 and r["delta_uncut"] == pytest.approx(-1 / 3)  # b, c, d: c right → wrong
    assert r["acc_t1_lo"] <= r["acc_t1"] <= r["acc_t1_hi"]
    # config.json's fields, nested ones with dotted names
    assert r["config.lr"] == 1e-5 and r["method_config.alpha"] == 10.0 and r["total_seconds"] == 12.5
    assert "breakdown" not in df.columns
    # the metrics dict back from the row: metrics.compute's, less the breakdown
    m = results.metrics_of(r)
    assert m == {k: v for k, v in results.recompute(run).items() if k != "breakdown"}
    assert type(m["n"]) is int and type(m["acc_t1"]) is float


def test_one_row_per_episode(run):
    df = results.load(run, per="episode")
    assert list(df["id"]) == ["a", "b", "c", "d"]
    assert list(df["correct_t1"]) == [False, True, True, False]
    assert list(df["correct_t2"]) == [True, True, False, False]
    assert list(df["truncated_t1"]) == [True, False, False, False]
    assert list(df["tokens_t2"]) == [10, 20, 10, 30]
    assert list(df["meta.steps"]) == [1, 1, 2, 2]
    assert set(df["run"]) == {"score-run"} and set(df["method"]) == {"score"}
    # the per-episode frame aggregates to the per-run metrics
    assert df.groupby("meta.steps")["correct_t2"].mean().tolist() == [1.0, 0.0]
    assert df["correct_t1"].mean() == results.load(run)["acc_t1"][0]


def test_several_runs_and_missing_columns(run, tmp_path):
    empty = make_run(tmp_path / "killed", [], total_seconds=None)  # no episode yet
    df = results.load([run, empty])
    assert list(df["run"]) == ["score-run", "killed"]
    assert df["n"].tolist() == [4, 0] and pd.isna(df["acc_t1"][1])
    assert results.metrics_of(df.iloc[1]) == {"n": 0}
    with pytest.raises(ValueError, match="per must be"):
        results.load([run], per="problem")


def test_shipped_run():
    """A shipped run directory, against its table.md (hand-checked: 5 of 20 right at both attempts)."""
    r = results.load([SHIPPED]).iloc[0]
    assert (r["method"], r["task"], r["n"], r["acc_t1"], r["acc_t2"]) == ("base", "arith", 20, 0.25, 0.25)
    assert (r["acc_t1_lo"], r["acc_t1_hi"]) == (0.05, 0.45)
    eps = results.load([SHIPPED], per="episode")
    assert len(eps) == 20 and eps["correct_t1"].sum() == 5 and eps["correct_t2"].sum() == 5
    assert table_from_runs([SHIPPED]) == (SHIPPED / "table.md").read_text()
