"""Finished run directories written by hand (no model, nothing runs), for reproduce's table tests."""
import json

import pytest

from scorebench.protocol import Episode, Turn
from scorebench.registry import TASKS
from scorebench.reproduce import TABLES, find_run, seed_rows
from scorebench.runner import RunConfig

PAIR_KINDS = [(1, 1), (1, 0), (0, 1), (0, 0)]
"""c→c, c→i, i→c, i→i: the order of a row's counts."""


@pytest.fixture
def write_run():
    def write(rdir, cfg, problems, counts, cut=(), seconds=1.5):
        """A finished run of ``cfg`` in ``rdir``: one episode per problem, their (r1, r2) pairs ``counts`` times
        each kind of PAIR_KINDS in order; the first attempts of the episodes at indices ``cut`` hit the cap."""
        pairs = [p for p, k in zip(PAIR_KINDS, counts) for _ in range(k)]
        assert len(pairs) == len(problems)
        rdir.mkdir(parents=True)
        (rdir / "config.json").write_text(json.dumps({"config": cfg.record(), "key": cfg.key(),
                                                      "n_problems": len(problems), "total_seconds": seconds}))
        with open(rdir / "episodes.jsonl", "w") as f:
            for i, (ex, (r1, r2)) in enumerate(zip(problems, pairs)):
                ep = Episode(str(ex["id"]), [Turn("p", "a", float(r1), finish_reason="length" if i in cut else "stop"),
                                             Turn("fix", "b", float(r2))])
                f.write(json.dumps(ep.to_json()) + "\n")
    return write


# (c→c, c→i, i→c, i→i) of 10 problems per SCoRe seed: Δ +30, +10, −10 → mean +10; Acc@t1 40, 50, 60 → 50
SCORE_SEEDS = {0: (3, 1, 4, 2), 1: (4, 1, 2, 3), 2: (5, 1, 0, 4)}
ONCE = (2, 2, 2, 4)  # every other row, run once at seed 0: Δ 0


@pytest.fixture
def table4_run(write_run):
    """``write(runs, cfg)``: the finished run of one Table 4 row config, as the ``table4`` fixture writes it."""
    test = TASKS.get("arith")(n_train=20, n_test=10).test()[:10]

    def write(runs, cfg):
        counts = SCORE_SEEDS[cfg.seed] if cfg.method == "score" else ONCE
        write_run(find_run(runs, cfg), cfg, test, counts, seconds=10.0 + cfg.seed)
    return write


@pytest.fixture
def table4(tmp_path, table4_run):
    """Table 4 on 10 arith problems, every row finished, SCoRe at seeds 0, 1, 2: (base config, runs dir)."""
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps({"score": {"stage1_steps": 1, "stage2_steps": 1}}))
    base = RunConfig(task="arith", limit=10, task_args={"n_train": 20, "n_test": 10},
                     method_args={"preset": str(preset)})
    runs = tmp_path / "runs"
    for method, _, cfgs in seed_rows(TABLES[4], base, (0, 1, 2), ("score",)):
        for cfg in cfgs:
            table4_run(runs, cfg)
    return base, runs
