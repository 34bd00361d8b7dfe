"""``reproduce --seeds``: a trained row over several seeds is the seeds' mean, each seed listed, from hand-made runs."""
import csv

import pytest

from scorebench import metrics as M
from scorebench.checks import UsageError
from scorebench.reproduce import TABLES, commands, reproduce, seed_rows
from scorebench.rundir import RunDir

# The ``table4`` fixture (conftest.py): SCoRe's three seeds have Δ +30, +10, −10 (mean +10), Acc@t1 40, 50, 60.


def test_a_seeded_row_is_the_mean_of_its_seeds(tmp_path, table4):
    base, runs = table4
    out = tmp_path / "table"
    result = reproduce(4, base, runs, out, progress=False, seeds=(0, 1, 2), rows=("score",))
    score = result["rows"][0]
    assert [s["seed"] for s in score["per_seed"]] == [0, 1, 2] and score["seconds"] == 33.0
    m = score["metrics"]
    assert m["n_seeds"] == 3 and m["n"] == 10
    assert (m["acc_t1"], m["acc_t2"], m["delta"]) == pytest.approx((0.5, 0.6, 0.1))
    assert [s["metrics"]["delta"] for s in score["per_seed"]] == pytest.approx([0.3, 0.1, -0.1])
    lo, hi = m["ci95"]["delta"]
    assert lo < 0 < 0.1 < hi  # seeds that disagree in sign: the CI says so
    want = M.seed_mean([RunDir(s["run"]).episodes() for s in score["per_seed"]])["ci95"]["delta"]
    assert [lo, hi] == want
    assert all("per_seed" not in r for r in result["rows"][1:])  # the other ablations: once, at --seed
    md = (out / "table4.md").read_text()
    row = next(x for x in md.splitlines() if x.startswith("| SCoRe | "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3 × 10" and cells[2].startswith("50.0 [") and cells[4].startswith("60.0 [")
    assert cells[6].startswith("10.0 [")
    seeds = [x for x in md.splitlines() if x.startswith("| SCoRe | ") and x != row]
    assert [x.split("|")[2].strip() for x in seeds] == ["0", "1", "2"]
    assert [x.split("|")[6].strip().split(" [")[0] for x in seeds] == ["30.0", "10.0", "-10.0"]
    assert md.count("--seed 2") == 1 and "SCoRe (seed 1): `scorebench run" in md
    rows = {r["method"]: r for r in csv.DictReader((out / "table4.csv").open())}
    assert rows["score"]["seeds"] == "0 1 2" and rows["score-no-stage1"]["seeds"] == "0"
    assert float(rows["score"]["Δ(t1,t2) ours"]) == pytest.approx(10.0)


def test_dry_run_lists_every_seed_and_bad_input_is_refused(table4):
    base, runs = table4
    cmds = commands(4, base, runs, (0, 1, 2), ("score",))
    assert len(cmds) == 3 + 4 and sum("--method score " in c for c in cmds) == 3
    assert len(commands(4, base, runs, (0, 1, 2))) == 3 * 5  # every row of Table 4 trains
    with pytest.raises(UsageError, match="does not have: scor"):
        seed_rows(TABLES[4], base, (0, 1), ("scor",))
    with pytest.raises(UsageError, match="repeats a seed"):
        seed_rows(TABLES[4], base, (0, 0))
    untrained = seed_rows(TABLES[2], base, (0, 1, 2))
    assert [len(cfgs) for _, _, cfgs in untrained] == [1, 1, 3, 3, 3]  # base and Self-Refine do not train


def test_cli_flags(capsys):
    from scorebench.cli import build_parser, main
    a = build_parser(["reproduce"]).parse_args(["reproduce", "--table", "4", "--seeds", "0,1,2",
                                                "--seed-rows", "score,score-single-turn"])
    assert a.seeds == (0, 1, 2) and a.seed_rows == ("score", "score-single-turn")
    with pytest.raises(SystemExit):
        build_parser(["reproduce"]).parse_args(["reproduce", "--table", "4", "--seeds", "0,x"])
    assert "comma-separated integers" in capsys.readouterr().err
    assert main(["reproduce", "--table", "4", "--seed-rows", "score", "--dry-run"]) != 0
    assert "--seed-rows needs --seeds" in capsys.readouterr().err


def test_dry_run_does_not_ask_for_this_machines_memory(table4, monkeypatch):
    """The printed commands are for other machines: a busy machine here does not refuse them (a real run does)."""
    from scorebench.training import plan
    monkeypatch.setattr(plan, "available_gb", lambda: 0.5)
    base, runs = table4
    assert len(commands(4, base, runs, (0, 1))) == 2 * 5
    with pytest.raises(UsageError, match="would not fit in memory"):
        reproduce(4, base, runs, runs / "t", progress=False, seeds=(0, 1))


def test_finished_only_writes_the_partial_table_and_runs_nothing(tmp_path, table4, monkeypatch):
    """A study spread over sessions: the table of what has finished (SCoRe's seeds 0 and 1 of 0, 1, 2; no Stage-I
    ablation yet), marked partial, the missing runs' commands listed, nothing started, no memory check."""
    import shutil
    from scorebench import reproduce as R
    from scorebench.training import plan
    base, runs = table4
    cfgs = {(m, c.seed): c for m, _, cs in seed_rows(TABLES[4], base, (0, 1, 2), ("score",)) for c in cs}
    gone = [R.find_run(runs, cfgs[("score", 2)]), R.find_run(runs, cfgs[("score-no-stage1", 0)])]
    for rdir in gone:
        shutil.rmtree(rdir)
    monkeypatch.setattr(plan, "available_gb", lambda: 0.5)  # a busy machine: reading finished runs still works
    ran = []
    real_run = R.run
    monkeypatch.setattr(R, "run", lambda cfg, rdir, **kw: (ran.append(rdir), real_run(cfg, rdir, **kw))[1])
    out = tmp_path / "table"
    result = reproduce(4, base, runs, out, progress=False, seeds=(0, 1, 2), rows=("score",), finished_only=True)
    assert not any(rdir.exists() for rdir in gone) and set(gone).isdisjoint(ran)
    assert [(x["method"], x["seed"]) for x in result["pending"]] == [("score", 2), ("score-no-stage1", 0)]
    assert [r["method"] for r in result["rows"]] == ["score", "score-single-turn", "score-no-shaping",
                                                     "score-star-stage2"]
    score = result["rows"][0]
    assert [s["seed"] for s in score["per_seed"]] == [0, 1] and score["metrics"]["n_seeds"] == 2
    assert score["metrics"]["delta"] == pytest.approx(0.2)  # (+30 + 10) / 2
    md = (out / "table4.md").read_text()
    assert "**Partial**" in md and "2 run(s) not finished" in md
    assert md.count("--seed 2") == 1 and "`scorebench run --method score-no-stage1" in md
    assert not any(x.startswith("| w/o Stage I |") for x in md.splitlines())
    assert any(x.startswith("| w/o reward shaping | 10 |") for x in md.splitlines())
    with pytest.raises(UsageError, match="runs nothing"):
        reproduce(4, base, runs, out, progress=False, finished_only=True, jobs=2)


def test_finished_only_keeps_a_seeded_row_with_one_finished_seed(tmp_path, table4):
    import shutil
    from scorebench import reproduce as R
    base, runs = table4
    cfgs = [c for m, _, cs in seed_rows(TABLES[4], base, (0, 1, 2), ("score",)) if m == "score" for c in cs]
    for c in cfgs[1:]:
        shutil.rmtree(R.find_run(runs, c))
    result = reproduce(4, base, runs, tmp_path / "t", progress=False, seeds=(0, 1, 2), rows=("score",),
                       finished_only=True)
    score = result["rows"][0]
    assert [s["seed"] for s in score["per_seed"]] == [0] and score["metrics"]["n_seeds"] == 1
    assert score["metrics"]["delta"] == pytest.approx(0.3)


def test_finished_only_before_anything_finished_lists_every_command(tmp_path, table4):
    import shutil
    base, runs = table4
    shutil.rmtree(runs)
    result = reproduce(4, base, runs, tmp_path / "t", progress=False, finished_only=True)
    assert result["rows"] == [] and len(result["pending"]) == 5
    md = (tmp_path / "t" / "table4.md").read_text()
    assert "5 run(s) not finished" in md and md.count("`scorebench run --method") == 5


def test_the_commands_list_says_each_runs_wall_time_commit_and_cpu(tmp_path, table4):
    """A run resumed before sessions were recorded keeps only its last session's total (a 408 s test evaluation
    after 9,367 s of training): the table says "at least" the training's seconds, not the 408."""
    from scorebench import reproduce as R
    base, runs = table4
    cfg = next(c for m, _, cs in seed_rows(TABLES[4], base, (0, 1, 2), ("score",)) for c in cs
               if m == "score" and c.seed == 1)
    rd = RunDir(R.find_run(runs, cfg))
    rd.update_config(resumed=2, train_seconds=9367.4, total_seconds=408.3, git_commit="5a2dbc154ac1",
                     machine={"cpu": "AMD EPYC", "cpus": 2})
    out = tmp_path / "table"
    result = reproduce(4, base, runs, out, progress=False, seeds=(0, 1, 2), rows=("score",))
    assert result["rows"][0]["per_seed"][1]["seconds"] == 9367.4
    line = next(x for x in (out / "table4.md").read_text().splitlines() if x.startswith("- SCoRe (seed 1):"))
    assert line.endswith("(at least 9367.4 s wall time over 3 sessions, not all recorded, commit 5a2dbc1, AMD EPYC;"
                         " from its config.json)")
    line0 = next(x for x in (out / "table4.md").read_text().splitlines() if x.startswith("- SCoRe (seed 0):"))
    assert "(10.0 s wall time; from" in line0 and "at least" not in line0
