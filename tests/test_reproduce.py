"""`reproduce` end to end on a tiny preset and a tiny random model; every cell checked against its run dir."""
import csv
import json
import os

import pytest

from scorebench.protocol import Episode, Turn
from scorebench.scaling import curve, sequential_votes, vote


def _t(pred, reward):
    return Turn("p", str(pred), reward=reward, info={"pred": pred})


def test_vote_majority_and_ties():
    assert vote([_t(3, 0.0), _t(4, 1.0), _t(4, 1.0)]) == 1.0
    assert vote([_t(3, 0.0), _t(4, 1.0)]) == 0.0       # tie: the earliest answer wins
    assert vote([_t(None, 1.0), _t(5, 0.0)]) == 0.0    # no answer, no vote
    assert vote([]) == 0.0


def test_scaling_curve_equal_budgets():
    par = [Episode(f"a#{k}", [_t(p, float(p == 7))]) for k, p in enumerate([1, 7, 7, 2])]
    seq = [Episode(f"a#{k}", [_t(1, 0.0), _t(p, float(p == 7))]) for k, p in enumerate([7, 3])]
    c = curve(par, seq, [1, 2, 4])
    assert c["parallel"] == [0.0, 0.0, 1.0]   # b=1: [1]; b=2: [1,7] tie → 1; b=4: 7 wins
    # b=1: one sample = chain 0's first attempt (1, wrong), not a whole chain; b=2: chain 0 ends in 7;
    # b=4: [7,3] tie → 7
    assert c["sequential"] == [0.0, 1.0, 1.0]
    for b in (1, 2, 3, 4):  # the sequential arm spends exactly b samples
        votes = sequential_votes(seq, b)
        assert sum(2 if any(t is e.attempts[-1] for e in seq) else 1 for t in votes) == b


TINY_PRESET = {"lr": 1e-3, "batch_size": 4, "steps": 1, "save_every": 0,
               "star": {"n_problems": 4}, "star+": {"n_problems": 4},
               "pair-sft": {"n_problems": 4, "samples_per_problem": 2},
               "score": {"stage1_steps": 1, "stage2_steps": 1, "problems_per_step": 2, "samples_per_problem": 2}}


def test_reproduce_table2_end_to_end(tiny_model_dir, tmp_path):
    from scorebench.reproduce import reproduce
    from scorebench.rundir import RunDir
    from scorebench.runner import RunConfig
    from scorebench.tables import recompute
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY_PRESET))
    base = RunConfig(task="arith", model=str(tiny_model_dir), limit=3, max_new_tokens=4, batch_size=8,
                     task_args={"n_train": 20, "n_test": 5}, method_args={"preset": str(preset)})
    out = tmp_path / "table"
    result = reproduce(2, base, tmp_path / "runs", out, progress=False)
    assert [r["method"] for r in result["rows"]] == ["base", "self-refine", "star+", "pair-sft", "score"]
    rows = list(csv.DictReader((out / "table2.csv").open()))
    md = (out / "table2.md").read_text()
    assert len(rows) == 5
    for row, res in zip(rows, result["rows"]):
        rd = RunDir(res["run"])
        assert rd.config()["config"]["method"] == row["method"]
        m = recompute(res["run"])
        assert int(row["n"]) == m["n"] == 3
        for key, head in [("acc_t1", "Acc@t1"), ("acc_t2", "Acc@t2"), ("delta", "Δ(t1,t2)"),
                          ("delta_i2c", "Δ i→c"), ("delta_c2i", "Δ c→i")]:
            assert float(row[f"{head} ours"]) == pytest.approx(round(100 * m[key], 2))
            lo, hi = m["ci95"][key]
            assert float(row[f"{head} ours_lo"]) == pytest.approx(round(100 * lo, 2))
            assert float(row[f"{head} ours_hi"]) == pytest.approx(round(100 * hi, 2))
        assert res["command"] in md
    assert rows[4]["Acc@t1 paper"] == "60.0" and rows[0]["Δ c→i paper"] == "15.8"
    assert (out / "table2.tex").read_text().count("\\\\") == 6
    assert (out / "figures" / "accuracy.png").exists() and (out / "figures" / "edit_distance.pdf").exists()
    # A second invocation reuses every run directory: no episode is regenerated.
    sizes = {r["run"]: (RunDir(r["run"]).episodes_path.stat().st_mtime_ns) for r in result["rows"]}
    reproduce(2, base, tmp_path / "runs", out, progress=False)
    assert sizes == {r["run"]: RunDir(r["run"]).episodes_path.stat().st_mtime_ns for r in result["rows"]}
    # Shipped run directories carry no weights: a finished row without its policy is not retrained, and its
    # config.json (wall times included) is left as the run wrote it.
    import shutil
    star_run = next(r["run"] for r in result["rows"] if r["method"] == "star+")
    shutil.rmtree(f"{star_run}/policy")
    before = open(f"{star_run}/config.json", "rb").read()
    reproduce(2, base, tmp_path / "runs", out, progress=False)
    assert not os.path.exists(f"{star_run}/policy") and open(f"{star_run}/config.json", "rb").read() == before
    # Rows are found under any directory name by the key recorded in their config.json (--dry-run lists them).
    from scorebench.reproduce import commands
    star_dir = next(r["run"] for r in result["rows"] if r["method"] == "star+")
    moved = tmp_path / "runs" / "my-star-plus"
    (tmp_path / "runs" / star_dir.split("/")[-1]).rename(moved)
    cmds = commands(2, base, tmp_path / "runs")
    assert any(c.endswith(f"--out {moved}") and "--method star+" in c for c in cmds)
    assert all("--preset" not in c for c in cmds if "--method base" in c or "--method self-refine" in c)


def test_key_follows_preset_content(tmp_path):
    """Editing a preset changes a trained method's key (its results change) but not an untrained one's; resuming
    a run directory with a changed preset is refused rather than silently mixing two configs."""
    from scorebench.rundir import RunDir, RunDirError
    from scorebench.runner import RunConfig
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"lr": 1e-5}))
    star = RunConfig(method="star", method_args={"preset": str(preset)})
    base = RunConfig(method="base", method_args={"preset": str(preset)})
    k_star, k_base = star.key(), base.key()
    preset.write_text(json.dumps({"lr": 2e-5}))
    assert star.key() != k_star
    assert base.key() == k_base
    rd = RunDir(tmp_path / "run")
    rd.init({"config": {"method": "star"}, "key": k_star})
    with pytest.raises(RunDirError, match="preset"):
        RunDir(tmp_path / "run").init({"config": {"method": "star"}, "key": star.key()})
