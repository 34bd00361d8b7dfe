"""Issue 23 item 2: before training, one line says how big the run is (episodes, optimizer steps, validation,
expected time and memory where measured), and a run that cannot fit in memory is refused before anything loads."""
import pytest

from scorebench.checks import UsageError
from scorebench.runner import RunConfig, validate
from scorebench.training import plan as P


def test_plan_line_counts_what_score_will_do(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "available_gb", lambda: 64.0)
    cfg = RunConfig(method="score", task="arith", limit=2, device="cpu", method_args={"preset": "cpu-learn"})
    t = validate(cfg, tmp_path / "o").training
    assert (t["steps"], t["episodes"], t["val_problems"], t["detail"]) == (32, 2048, 200, "8 Stage I + 24 Stage II")
    assert "32 optimizer steps" in t["line"] and "2,048 episodes" in t["line"]
    assert "--limit bounds evaluation only" in t["line"]
    assert t["expected"]["peak_gb"] == P.EMBEDDED_PEAK_GB and t["expected"]["minutes"] > 60
    per = RunConfig(method="score", task="arith", limit=2, device="cpu",
                    method_args={"preset": "cpu-learn", "turn2_credit": "per_attempt", "samples_per_problem": "2",
                                 "samples_per_attempt": "2", "val_problems": "0"})
    t = validate(per, tmp_path / "p").training
    assert t["episodes"] == 2048 and t["val_points"] == 0 and "validation" not in t["line"]
    assert validate(RunConfig(method="base", limit=2), tmp_path / "b").training is None
    assert not (tmp_path / "o").exists()  # validation writes nothing


def test_a_run_that_cannot_fit_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "available_gb", lambda: 4.0)
    cfg = RunConfig(method="score", task="arith", limit=2, device="cpu", method_args={"preset": "cpu-learn"})
    with pytest.raises(UsageError, match="4.0 GB free: the run would not fit"):
        validate(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    monkeypatch.setattr(P, "available_gb", lambda: 64.0)
    validate(cfg, tmp_path / "o")


def test_expected_time_only_where_measured():
    plan = {"episodes": 1000, "val_points": 0}
    assert P.expected(plan, "bfloat16", embedded=True, on_cpu=True, threads=1)["minutes"] == 42
    assert P.expected(plan, "float32", embedded=True, on_cpu=True, threads=1)["minutes"] == 47
    assert P.expected(plan, "bfloat16", embedded=False, on_cpu=True, threads=1) == {}
    assert P.expected(plan, "bfloat16", embedded=True, on_cpu=False, threads=1) == {}
