"""A plugin's ``rollout`` that breaks its contract (issue 23, item 4) is one line naming the plugin, exit 2, and
leaves nothing behind: not a stray ``config.json``, not a run that ``scorebench run`` calls done while
``scorebench table`` calls it incomplete. One test per mistake; the README's contract example runs as written."""
import json
import re
from pathlib import Path

import pytest

from scorebench import runner
from scorebench.cli import main
from scorebench.method import Method
from scorebench.protocol import Episode, Turn
from scorebench.registry import METHODS

ROOT = Path(__file__).resolve().parents[3]  # the repository


class StubEngine:
    """The runner builds an engine before evaluating; these plugins never call it, so no model loads."""

    def describe(self):
        return {"engine": "stub"}


def good_episodes(examples, turns):
    return [Episode(id=str(ex["id"]), turns=[Turn(prompt="p", response="r", reward=0.0) for _ in range(turns)])
            for ex in examples]


MISTAKES = {  # name: (what rollout returns, words the error must contain)
    "none": (lambda exs, turns: None, "rollout returned NoneType, not a list of episodes"),
    "too-few": (lambda exs, turns: good_episodes(exs, turns)[:-1], "rollout returned 2 episodes for 3 examples"),
    "too-many": (lambda exs, turns: good_episodes(exs, turns) * 2, "rollout returned 6 episodes for 3 examples"),
    "wrong-ids": (lambda exs, turns: good_episodes(exs, turns)[::-1], "episode 0 has id 'test/2' but example 0"),
    "int-ids": (lambda exs, turns: [Episode(id=i, turns=e.turns) for i, e in enumerate(good_episodes(exs, turns))],
                "episode 0 has id 0 but example 0 has id 'test/0'"),
    "dicts": (lambda exs, turns: [e.to_json() for e in good_episodes(exs, turns)], "returned a dict at position 0"),
    "one-turn": (lambda exs, turns: good_episodes(exs, 1), "has 1 graded attempt, but the run asks for 2"),
    "no-reward": (lambda exs, turns: [Episode(id=e.id, turns=[Turn("p", "r")] * turns)
                                      for e in good_episodes(exs, turns)], "attempt 1 has reward None"),
}


def plugin(name, returns):
    cls = type(f"Plugin_{name.replace('-', '_')}", (Method,), {
        "rollout": lambda self, engine, task, examples, params, turns, **kw: returns(examples, turns)})
    cls.__module__ = "my_plugin"
    return cls


@pytest.fixture
def registered(monkeypatch, tmp_path):
    METHODS._load()
    for name, (returns, _) in MISTAKES.items():
        monkeypatch.setitem(METHODS._items, f"bad-{name}", plugin(name, returns))
    monkeypatch.setitem(METHODS._items, "good", plugin("good", good_episodes))
    monkeypatch.setattr(runner, "engine_for", lambda cfg, model: StubEngine())
    monkeypatch.chdir(tmp_path)
    return tmp_path



def args(method, out="o"):
    return ["run", "--method", method, "--task", "arith", "--limit", "3", "--out", out]


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_broken_rollout_is_one_line_naming_the_plugin_and_leaves_nothing(name, registered, capsys):
    rc = main(args(f"bad-{name}"))
    err = capsys.readouterr().err
    assert rc == 2, err
    errors = [line for line in re.split(r"[\r\n]", err) if "error" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert f"method 'bad-{name}' (my_plugin.Plugin_{name.replace('-', '_')})" in errors[0], err
    assert MISTAKES[name][1] in errors[0], err
    assert not (registered / "o").exists()  # no config.json, no episodes: the fixed plugin starts clean


def test_broken_second_chunk_keeps_the_first_and_writes_none_of_its_own(registered, monkeypatch, capsys):
    """A plugin that breaks on a later chunk: the finished chunks stay (resumable), the broken one is not written."""
    calls = []

    def returns(exs, turns):
        calls.append(len(exs))
        return good_episodes(exs, turns) if len(calls) == 1 else None
    monkeypatch.setitem(METHODS._items, "bad-later", plugin("later", returns))
    assert main(args("bad-later") + ["--batch-size", "2"]) == 2
    assert "rollout returned NoneType" in capsys.readouterr().err
    lines = (registered / "o" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["test/0", "test/1"]


def test_a_plugin_that_keeps_the_contract_runs(registered, capsys):
    assert main(args("good")) == 0
    assert len((registered / "o" / "episodes.jsonl").read_text().splitlines()) == 3
    assert "| good | arith | 3 |" in capsys.readouterr().out


def test_readme_plugin_contract_and_its_example(registered, monkeypatch, capsys):
    """The README states the contract (what rollout receives and returns, chunks, ids, turns, installing, a task's
    ids and --task-arg) and its example method runs as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    for words in ("one `Episode` per example", "in order", "str(example[\"id\"])", "turns", "chunk",
                  ".venv/bin/pip install -e", "--task-arg", "\"id\""):
        assert words in section, words
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 30
    ns: dict = {}
    exec(compile(code, "README-example", "exec"), ns)
    monkeypatch.setitem(METHODS._items, "readme-example", ns["FirstAnswerTwice"])

    class Echo(StubEngine):  # the example samples turn 1 through the engine: answer every prompt with "4"
        def generate(self, convs, params, desc=None):
            from scorebench.engines.base import Completion
            return [[Completion(text="4", token_ids=[1]) for _ in range(params.n)] for _ in convs]
    monkeypatch.setattr(runner, "engine_for", lambda cfg, model: Echo())
    assert main(args("readme-example")) == 0, capsys.readouterr().err
    eps = [json.loads(x) for x in (registered / "o" / "episodes.jsonl").read_text().splitlines()]
    assert [len(e["turns"]) for e in eps] == [2, 2, 2]
    assert all(e["turns"][0]["response"] == e["turns"][1]["response"] == "4" for e in eps)


def test_training_memory_is_released_before_the_test_evaluation(registered, monkeypatch, tmp_path):
    """A trainer is held in reference cycles (model, optimizer, reference): once ``train`` returns, the runner
    drops the training engine, collects the cycles and trims the heap before it loads the policy to evaluate — a
    tiny SCoRe run held 3.5 GB after training without this, 1.2 GB with it."""
    import weakref
    seen, refs = [], {}

    class Cycle:  # what a trainer is: an object graph only the cyclic collector frees
        def __init__(self):
            self.me = self

    class Trains(plugin("trains", good_episodes)):  # evaluates without calling the engine
        trains = True

        def train(self, ctx):
            held = Cycle()
            refs["trainer"], refs["engine"] = weakref.ref(held), weakref.ref(ctx.engine)
            (tmp_path / "policy").mkdir()
            return str(tmp_path / "policy")

    def engine_for(cfg, model):
        if model is not None:  # the policy's engine: what is still alive, what was trimmed, at this point
            seen.append((refs["trainer"]() is None, refs["engine"]() is None, list(trims)))
        return StubEngine()
    trims = []
    monkeypatch.setattr(runner, "engine_for", engine_for)
    monkeypatch.setattr(runner.device, "trim_heap", lambda: trims.append("trim") or True)
    monkeypatch.setitem(METHODS._items, "trains", Trains)
    import gc
    gc.disable()  # no automatic collection: only the runner's own may free the cycle
    try:
        assert main(args("trains")) == 0
    finally:
        gc.enable()
    assert seen == [(True, True, ["trim"])]
