"""``table`` shows every attempt (it hid attempts after the second, issue 23 item 6); ``plot`` labels bars by task
and variant, not by method only."""
import json
from pathlib import Path

from scorebench.cli import main
from scorebench.protocol import Episode, Turn


def make_run(d: Path, method: str, task: str, rewards: list[list[float]]) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"method": method, "task": task, "seed": 0},
                                               "n_problems": len(rewards), "total_seconds": 1}))
    eps = [Episode(id=str(i), turns=[Turn("p", f"r{k}", float(r)) for k, r in enumerate(rs)])
           for i, rs in enumerate(rewards)]
    (d / "episodes.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in eps))
    return d


def test_table_shows_every_turn(tmp_path, capsys):
    run = make_run(tmp_path / "r", "base", "arith", [[0, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]])
    assert main(["table", "--no-ci", "--diagnostics", str(run)]) == 0
    head, _, row = capsys.readouterr().out.splitlines()[:3]
    cells = dict(zip([c.strip() for c in head.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["Acc@t1"] == "25.0" and cells["Acc@t2"] == "50.0" and cells["Acc@t3"] == "50.0"
    assert cells["Δ(t2,t3)"] == "0.0" and cells["Δ(t1,t2)"] == "25.0"
    assert "cut t3" in cells and "tokens t3" in cells


def test_table_of_two_turns_is_unchanged(tmp_path, capsys):
    run = make_run(tmp_path / "r", "base", "arith", [[0, 1], [1, 1]])
    assert main(["table", "--no-ci", str(run)]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert "t3" not in head and "Acc@t2" in head


def test_plot_labels_tell_tasks_and_variants_apart(tmp_path, monkeypatch):
    from scorebench import plots
    runs = [make_run(tmp_path / "a", "base", "arith", [[0, 1], [1, 1]]),
            make_run(tmp_path / "b", "base", "arith-mix", [[0, 0], [1, 1]]),
            make_run(tmp_path / "c1", "score", "arith", [[0, 1], [1, 0]]),
            make_run(tmp_path / "c2", "score", "arith", [[1, 1], [1, 0]])]
    seen = {}

    def keep(fig, out):
        ax = fig.axes[0]
        seen[out.name] = ([t.get_text() for t in ax.get_xticklabels()] if out.name == "accuracy"
                          else [t.get_text() for t in ax.get_legend().get_texts()])
        return []
    monkeypatch.setattr(plots, "_save", keep)
    plots.all_figures(runs, tmp_path / "fig")
    assert seen["accuracy"] == ["base (arith)", "base (arith-mix)", "c1", "c2"]
    assert seen["edit_distance"] == ["base (arith)", "base (arith-mix)", "c1", "c2"]


def test_validation_curves_plot_each_runs_points(tmp_path, monkeypatch):
    """One line per run with validation points, at their steps, in percent; a run without any is left out."""
    import json

    from scorebench import plots
    runs = [make_run(tmp_path / name, method, "arith", [[0, 1]])
            for name, method in (("s0", "score"), ("s1", "score"), ("b", "base"))]
    pts = {"s0": [(0, 0.285, 0.305), (12, 0.235, 0.28), (12, 0.25, 0.3)], "s1": [(0, 0.285, 0.305), (8, 0.3, 0.4)]}
    for name, rows in pts.items():
        (tmp_path / name / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "train" / "val_log.jsonl").write_text("".join(
            json.dumps({"step": s, "acc_t1": a, "acc_t2": b, "delta": b - a, "n": 200}) + "\n" for s, a, b in rows))
    seen = {}

    def keep(fig, out):
        seen[out.name] = {ax.get_title(): {ln.get_label(): (list(ln.get_xdata()), [round(y, 6) for y in ln.get_ydata()])
                                           for ln in ax.get_lines() if not ln.get_label().startswith("_")}
                          for ax in fig.axes}
        return []
    monkeypatch.setattr(plots, "_save", keep)
    plots.all_figures(runs, tmp_path / "fig")
    got = seen["validation_curves"]
    assert list(got) == ["validation Acc@t1, n=200", "validation Acc@t2, n=200", "validation Δ(t1, t2), n=200"]
    assert got["validation Acc@t1, n=200"] == {"s0": ([0, 12], [28.5, 25.0]), "s1": ([0, 8], [28.5, 30.0])}
    assert got["validation Δ(t1, t2), n=200"]["s1"] == ([0, 8], [2.0, 10.0])  # a resumed step: the last line stands
    assert got["validation Δ(t1, t2), n=200"]["s0"] == ([0, 12], [2.0, 5.0])


def test_table_seed_mean_folds_seeds_of_one_configuration(tmp_path, capsys):
    """Runs that differ only in their seed become one row, the seeds' mean (Δ +50 and 0 → +25); another
    configuration, and an unfinished run of the same one, keep their own rows."""
    def run(name, method, seed, rewards, finished=True):
        d = make_run(tmp_path / name, method, "arith", rewards)
        rec = json.loads((d / "config.json").read_text())
        rec["config"]["seed"] = seed
        if not finished:
            del rec["total_seconds"]
        (d / "config.json").write_text(json.dumps(rec))
        return str(d)
    runs = [run("s0", "score", 0, [[0, 1], [0, 1], [1, 1], [0, 0]]), run("base", "base", 0, [[1, 1]] * 4),
            run("s1", "score", 1, [[1, 1], [0, 0], [1, 0], [0, 1]]), run("s2", "score", 2, [[0, 1]] * 2, False)]
    assert main(["table", "--seed-mean", *runs]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]}
    assert list(rows) == ["score (seeds 0,1)", "base", "s2"]
    seeds = rows["score (seeds 0,1)"]
    assert seeds[2] == "2 × 4"
    assert [c.split(" [")[0] for c in seeds[3:8]] == ["37.5", "62.5", "25.0", "37.5", "12.5"]
    assert rows["s2"][2] == "2 of 2 (incomplete)"
    assert main(["table", "--seed-mean", "--diagnostics", *runs]) != 0


def test_table_seed_mean_labels_configurations_apart(tmp_path, capsys):
    """Two seed groups of one method that differ in a method argument (here the training dtype) get rows named by
    that argument, not the same "score (seeds 0,1)" twice."""
    def run(name, seed, dtype, rewards):
        d = make_run(tmp_path / name, "score", "arith", rewards)
        rec = json.loads((d / "config.json").read_text())
        rec["config"].update(seed=seed, method_args={"dtype": dtype, "val_every": 16})
        (d / "config.json").write_text(json.dumps(rec))
        return str(d)
    runs = [run("a0", 0, "float32", [[0, 1], [1, 1]]), run("a1", 1, "float32", [[0, 1], [0, 0]]),
            run("b0", 0, "bfloat16", [[1, 1], [0, 0]]), run("b1", 1, "bfloat16", [[1, 0], [0, 0]])]
    assert main(["table", "--seed-mean", "--no-ci", *runs]) == 0
    rows = [ln.split("|")[1].strip() for ln in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["score dtype=float32 (seeds 0,1)", "score dtype=bfloat16 (seeds 0,1)"]


def test_table_seed_mean_counts_runs_whose_own_delta_clears_zero(tmp_path, capsys):
    """A seed mean hides whether every run self-corrects a little or a few a lot: the last column counts the runs
    whose own Δ CI is above 0 (all fixes), below 0 (all breaks), neither (no change; a CI touching 0)."""
    from scorebench.tables import runs_delta_cell

    def run(name, seed, rewards):
        d = make_run(tmp_path / name, "score", "arith", rewards)
        rec = json.loads((d / "config.json").read_text())
        rec["config"]["seed"] = seed
        (d / "config.json").write_text(json.dumps(rec))
        return str(d)
    runs = [run("up", 0, [[0, 1]] * 20), run("flat", 1, [[1, 1]] * 20), run("down", 2, [[1, 0]] * 20),
            run("up2", 3, [[0, 1]] * 20)]
    assert main(["table", "--seed-mean", *runs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("|")[-2].strip() == "runs: Δ CI > 0 ↑, < 0 ↓"
    assert lines[2].split("|")[-2].strip() == "2↑ 1↓ of 4"
    assert runs_delta_cell([{"ci95": {"delta": [0.0, 0.02]}}, {"ci95": {"delta": [-0.01, 0.0]}}, {}]) == "0↑ 0↓ of 3"
