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
