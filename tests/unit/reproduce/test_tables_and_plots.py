"""Rough edges a new user hit in the first hour (issue 23, item 6): ``table`` hid attempts after the second,
``plot`` labelled bars by method only, ``bench --help`` promised a config.json it never writes, set-up printed
setuptools' license deprecation three times, and a hub id with no network took a minute of retries."""
import json
import re
import socket
import time
from pathlib import Path

import pytest

from scorebench import models
from scorebench.cli import build_parser, main
from scorebench.protocol import Episode, Turn

ROOT = Path(__file__).resolve().parent.parent


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


def test_help_claims_config_json_only_where_one_is_written():
    subs = next(a for a in build_parser()._actions if a.dest == "cmd").choices
    for action in subs["bench"]._actions:
        assert "records" not in (action.help or ""), action.help  # bench writes only its markdown table


def test_pyproject_license_gives_setuptools_no_deprecation_warning(monkeypatch):
    import warnings
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), "pyproject.toml")
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message)[:200] for w in caught]
    assert "Apache-2.0" in (getattr(dist.metadata, "license_expression", None) or dist.metadata.license)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """No connection can be opened and the hub cache is empty (the state of an offline machine)."""
    def refuse(*a, **k):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_hub_id_without_network_is_one_quick_line_saying_how_to_use_a_local_dir(no_network, capsys):
    t = time.time()
    rc = main(["run", "--task", "arith", "--limit", "1", "--model", "nobody-xyz/not-a-model", "--out", "o"])
    took = time.time() - t
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in re.split(r"[\r\n]", err) if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    # why it is offline: no network, or HF_HUB_OFFLINE set (by an earlier test in the same process)
    assert ("cannot be reached" in err or "HF_HUB_OFFLINE is set" in err) and "--model DIR" in err
    assert "hf download nobody-xyz/not-a-model" in err
    assert took < 15, took
    assert not (no_network / "o").exists()


def test_hub_id_without_network_uses_its_cached_snapshot(no_network):
    snap = no_network / "hub-cache" / "models--org--cached-model" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("a" * 40)
    assert models.resolve("org/cached-model") == str(snap)
    with pytest.raises(models.ModelError, match="nor in the local hub cache"):
        models.resolve("org/other-model")
