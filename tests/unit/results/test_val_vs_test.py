"""``scripts/val_vs_test.py``: each run's validation Δ at the step tested, against its test Δ, from hand-made run
directories with hand-counted Δ; Pearson's r and its Fisher-z interval against values computed by hand."""
import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def vt(load_script):
    return load_script("val_vs_test")


def run(d: Path, fixes: int, val: list[tuple[int, float]], step=32, finished=True) -> str:
    """10 test episodes, ``fixes`` of them wrong → right, the rest right → right: test Δ = 10·fixes points."""
    d.mkdir(parents=True)
    t = lambda r: {"prompt": "p", "response": "x", "reward": r, "finish_reason": "stop", "n_tokens": 5}  # noqa: E731
    eps = [{"id": str(i), "turns": [t(0.0 if i < fixes else 1.0), t(1.0)]} for i in range(10)]
    cfg = {"config": {"method": "score", "task": "arith", "seed": 0}, "n_problems": 10, "test_policy_step": step}
    if finished:
        cfg["total_seconds"] = 1.0
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    (d / "train").mkdir()
    (d / "train" / "val_log.jsonl").write_text("".join(
        json.dumps({"step": s, "acc_t1": 0.5, "acc_t2": 0.5 + v, "delta": v, "n": 200}) + "\n" for s, v in val))
    return str(d)


def test_pairs_the_validation_point_of_the_tested_step(vt, tmp_path, capsys):
    runs = [run(tmp_path / "a", 0, [(0, 0.0), (32, 0.01)]), run(tmp_path / "b", 1, [(0, 0.0), (32, 0.05)]),
            run(tmp_path / "c", 2, [(0, 0.0), (32, 0.2), (32, 0.15)]),  # resumed: the last line of step 32 stands
            run(tmp_path / "d", 4, [(0, 0.0), (16, 0.3), (32, 0.35)]),
            run(tmp_path / "e", 5, [(0, 0.0), (16, 0.3)], step=16),  # select=best_val_delta tested step 16
            run(tmp_path / "f", 5, [(0, 0.0)], finished=False), run(tmp_path / "g", 5, [(0, 0.0)])]
    assert vt.main(runs) == 0
    out = json.loads(capsys.readouterr().out)
    got = {Path(r["run"]).name: (r["step"], round(r["val"], 6), round(r["test"], 6)) for r in out["runs"]}
    assert got == {"a": (32, 1.0, 0.0), "b": (32, 5.0, 10.0), "c": (32, 15.0, 20.0), "d": (32, 35.0, 40.0),
                   "e": (16, 30.0, 50.0)}
    assert out["skipped"] == {runs[5]: "unfinished", runs[6]: "no validation point at step 32"}
    v, t = np.array([1.0, 5, 15, 35, 30]), np.array([0.0, 10, 20, 40, 50])
    r = np.sum((v - v.mean()) * (t - t.mean())) / np.sqrt(np.sum((v - v.mean()) ** 2) * np.sum((t - t.mean()) ** 2))
    assert out["pearson_r"] == pytest.approx(r)
    z, half = np.arctanh(r), 1.959964 / np.sqrt(2)
    assert out["pearson_ci95"] == pytest.approx([np.tanh(z - half), np.tanh(z + half)])
    assert out["spearman_rho"] == pytest.approx(0.9)  # ranks 1,2,3,5,4 against 1,2,3,4,5: 1 - 6*2/(5*24)


def test_too_few_runs_is_an_error_not_a_number(vt, tmp_path, capsys):
    runs = [run(tmp_path / n, 1, [(32, 0.1)]) for n in "abc"]
    assert vt.main(runs) == 2
    assert "at least 4" in capsys.readouterr().err


def test_best_of_k_keeps_the_run_validation_prefers(vt):
    val, test = np.array([1.0, 3.0, 2.0, 3.0]), np.array([0.0, 10.0, 4.0, 6.0])
    # pairs: {0,1}→10 {0,2}→4 {0,3}→6 {1,2}→10 {1,3}→ tie (10+6)/2=8 {2,3}→6: mean 44/6
    assert vt.best_of(val, test, 2) == pytest.approx(44 / 6)
    assert vt.best_of(val, test, 1) == pytest.approx(test.mean())
    assert vt.best_of(val, test, 4) == pytest.approx(8.0)
