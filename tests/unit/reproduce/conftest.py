"""Finished run directories written by hand (no model, nothing runs), for reproduce's table tests."""
import json

import pytest

from scorebench.protocol import Episode, Turn

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
