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


# (c→c, c→i, i→c, i→i) counts of the 10 test problems of each Table 2 row; every row's cells differ, and within
# a row Acc@t1 ≠ Acc@t2 and Δ i→c ≠ Δ c→i, so a swapped column or row shows
HAND = {"base": (4, 1, 3, 2), "self-refine": (2, 3, 1, 4), "star+": (1, 2, 4, 3), "pair-sft": (6, 0, 1, 3),
        "score": (3, 1, 5, 1)}
# literal cells (%): Acc@t1, Acc@t2, Δ(t1,t2), Δ i→c, Δ c→i, Δ uncut
HAND_CELLS = {"base": ["50.0", "70.0", "20.0", "30.0", "10.0", "20.0"],
              "self-refine": ["50.0", "30.0", "-20.0", "10.0", "30.0", "-20.0"],
              "star+": ["30.0", "50.0", "20.0", "40.0", "20.0", "20.0"],
              "pair-sft": ["60.0", "70.0", "10.0", "10.0", "0.0", "10.0"],
              "score": ["40.0", "80.0", "40.0", "50.0", "10.0", "33.3"]}  # one i→c pair of score's is cut


def test_reproduce_table2_cells_from_hand_made_runs(tmp_path, write_run):
    """``reproduce`` on finished run directories written by hand (no model, nothing runs): every cell of the
    emitted table is the literal value of its row's episodes, in the paper's column order."""
    from scorebench.registry import TASKS
    from scorebench.reproduce import TABLES, find_run, reproduce, row_configs
    from scorebench.runner import RunConfig
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY_PRESET))
    base = RunConfig(task="arith", limit=10, task_args={"n_train": 20, "n_test": 10},
                     method_args={"preset": str(preset)})
    test = TASKS.get("arith")(n_train=20, n_test=10).test()[:10]
    runs = tmp_path / "runs"
    for method, _, cfg, _ in row_configs(TABLES[2], base):
        # score's first i→c pair (index 4): the first attempt hit the cap
        write_run(find_run(runs, cfg), cfg, test, HAND[method], cut=(4,) if method == "score" else ())
    out = tmp_path / "table"
    result = reproduce(2, base, runs, out, progress=False)
    assert [r["method"] for r in result["rows"]] == list(HAND)
    rows = list(csv.DictReader((out / "table2.csv").open()))
    heads = ["Acc@t1", "Acc@t2", "Δ(t1,t2)", "Δ i→c", "Δ c→i", "Δ uncut"]
    assert [r["method"] for r in rows] == list(HAND) and all(r["n"] == "10" for r in rows)
    md = (out / "table2.md").read_text()
    for row in rows:
        want = HAND_CELLS[row["method"]]
        assert [f"{float(row[f'{h} ours']):.1f}" for h in heads] == want, row["method"]  # csv: 2 decimals
        for h in heads:
            assert float(row[f"{h} ours_lo"]) <= float(row[f"{h} ours"]) <= float(row[f"{h} ours_hi"]), h
        md_row = next(x for x in md.splitlines() if x.startswith(f"| {row['label']} |"))
        cells = [c.strip() for c in md_row.strip("|").split("|")]
        assert cells[1] == "10"
        assert [c.split(" [")[0] for c in cells[2::2]] == want, md_row  # ours (CI in brackets)
        assert cells[13] == "–"  # Δ uncut: no paper number
    paper = {r["method"]: r for r in rows}
    assert paper["score"]["Acc@t1 paper"] == "60.0" and paper["base"]["Δ c→i paper"] == "15.8"


def test_a_run_recorded_before_rules_2_is_not_reused_under_rules_2(tmp_path):
    """A config.json from before keys and ``rules`` were recorded ran under rules 1 (lax grading): reproduce
    finds it for a rules-1 row only, never for today's strict row (it once did: the lax base row was reused)."""
    from scorebench.reproduce import find_run
    from scorebench.runner import RunConfig
    old = RunConfig(method="base", task="arith", rules=1)
    legacy = tmp_path / "runs" / "base-arith"
    legacy.mkdir(parents=True)
    rec = old.record()
    assert "rules" not in rec  # the value rules 1 runs used is left out of the record
    (legacy / "config.json").write_text(json.dumps({"config": rec}))
    assert find_run(tmp_path / "runs", old) == legacy
    strict = RunConfig(method="base", task="arith")
    assert find_run(tmp_path / "runs", strict) == tmp_path / "runs" / f"base-arith-{strict.key()}"
    assert RunConfig.from_record(rec) == old
