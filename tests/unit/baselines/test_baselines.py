"""Baseline data filters, pair construction, method config resolution, and plugin discovery."""
from __future__ import annotations

import random
import sys
import textwrap
from collections import Counter
from types import SimpleNamespace

import pytest

from scorebench.baselines.pair_sft import PairConfig, make_pairs, pair_episode
from scorebench.baselines.self_refine import SelfRefineMethod
from scorebench.baselines.star import StarConfig, filter_star, trace_type
from scorebench.training.sequences import end_of_turn
from scorebench.protocol import Episode, Turn
from scorebench.registry import METHODS, Registry
from scorebench.training import resolve_method_config


def ep(eid, *rewards):
    return Episode(eid, [Turn(f"p{k}", f"{eid}-a{k}", reward=r) for k, r in enumerate(rewards)])


def test_filter_star_keeps_exactly_successful_revisions():
    eps = [ep("ic", 0.0, 1.0), ep("cc", 1.0, 1.0), ep("ci", 1.0, 0.0), ep("ii", 0.0, 0.0), ep("one", 0.0),
           Episode("fb", [Turn("p", "x", reward=0.0), Turn("fb", "y", graded=False), Turn("r", "z", reward=1.0)])]
    assert [(e.id, k) for e, k in filter_star(eps, plus=False)] == [("ic", "i->c"), ("fb", "i->c")]
    assert [(e.id, k) for e, k in filter_star(eps, plus=True)] == [("ic", "i->c"), ("cc", "c->c"), ("fb", "i->c")]
    assert [trace_type(e) for e in eps[:4]] == ["i->c", "c->c", "c->i", "i->i"]


def test_make_pairs():
    by = {"a": [ep("a#0", 0.0), ep("a#1", 1.0), ep("a#2", 0.0), ep("a#3", 1.0)],
          "b": [ep("b#0", 0.0), ep("b#1", 0.0)],          # no right sample: no pair
          "c": [ep("c#0", 1.0)]}                         # a lone right sample: no right->right pair (not with itself)
    pairs = make_pairs(by, plus=False, rng=random.Random(0))
    assert Counter(p[0] for p in pairs) == {"a": 2}
    for pid, first, second, kind in pairs:
        assert kind == "wrong->right" and first.reward == 0.0 and second.reward == 1.0
        assert first.response.startswith(pid) and second.response.startswith(pid)
    plus = make_pairs(by, plus=True, rng=random.Random(0))
    kinds = Counter((p[0], p[3]) for p in plus)
    assert kinds == {("a", "wrong->right"): 2, ("a", "right->right"): 2}
    for pid, first, second, kind in plus:
        if kind == "right->right":
            assert first is not second and first.reward == second.reward == 1.0
    capped = make_pairs(by, plus=True, rng=random.Random(0), max_pairs_per_problem=1)
    assert Counter(p[3] for p in capped) == {"wrong->right": 1, "right->right": 1}
    e = pair_episode("a", pairs[0][1], pairs[0][2], "Fix it.")
    assert [t.prompt for t in e.turns] == ["p0", "Fix it."] and e.rewards == [0.0, 1.0]


def test_make_pairs_deterministic():
    by = {str(i): [ep(f"{i}#{k}", float(k % 2)) for k in range(5)] for i in range(4)}
    a = make_pairs(by, True, random.Random(3))
    b = make_pairs(by, True, random.Random(3))
    assert [(p[1].response, p[2].response) for p in a] == [(p[1].response, p[2].response) for p in b]


def test_pairs_become_turn2_sft_sequences(tokenizer):
    from scorebench.engines.base import render_ids
    from scorebench.training import episode_to_sequences
    tok = tokenizer
    e = pair_episode("a", Turn("2+2?", "5", reward=0.0), Turn("2+2?", "4", reward=1.0), "Fix it.")
    (s,) = episode_to_sequences(tok, e, [0.0, 1.0])
    assert tok.decode([t for t, w in zip(s.input_ids, s.weights) if w]) == "4<|im_end|>"
    # A capped first attempt (sampled ids without the end-of-turn token) paired with a right second attempt:
    # the training context is the one the chat template renders at test time, not the capped ids glued on.
    prompt = render_ids(tok, [{"role": "user", "content": "2+2?"}])
    capped = Turn("2+2?", "It is", reward=0.0, prompt_ids=prompt,
                  response_ids=tok("It is", add_special_tokens=False)["input_ids"], finish_reason="length")
    right_ids = tok("4", add_special_tokens=False)["input_ids"] + [end_of_turn(tok)]
    e = pair_episode("a", capped, Turn("2+2?", "4", reward=1.0, prompt_ids=prompt, response_ids=right_ids), "Fix it.")
    (s,) = episode_to_sequences(tok, e, [0.0, 1.0])
    ctx = render_ids(tok, [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "It is"},
                           {"role": "user", "content": "Fix it."}])
    assert s.input_ids == ctx + right_ids and s.weights == [0.0] * len(ctx) + [1.0] * len(right_ids)


def ctx(method, **args):
    return SimpleNamespace(config=SimpleNamespace(method=method, seed=7, method_args=args))


def test_resolve_method_config_merges_preset_sections_and_args():
    m, t = resolve_method_config(ctx("star+", iterations="2", lr="1e-4"), StarConfig, ["star", "star+"])
    assert m.iterations == 2 and t.lr == 1e-4 and t.seed == 7
    assert m.n_problems is not None  # from the cpu-small preset's star section
    m, t = resolve_method_config(ctx("pair-sft", preset="paper"), PairConfig, ["pair-sft"])
    assert t.batch_size == 512 and t.lr == 5e-6
    with pytest.raises(ValueError, match="bogus"):
        resolve_method_config(ctx("star", bogus=1), StarConfig)


def test_self_refine_protocol():
    p = SelfRefineMethod().protocol(2)
    assert p.feedback_prompt and p.refine_instruction and p.turns == 2 and not SelfRefineMethod.trains


def test_builtins_registered():
    for name in ("base", "self-refine", "star", "star+", "pair-sft", "pair-sft+"):
        assert METHODS.get(name)


def test_plugin_found_through_entry_point(tmp_path, monkeypatch):
    pkg = tmp_path / "my_plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from scorebench.method import Method
        class Echo(Method):
            description = "test plugin"
            trains = True
            def train(self, ctx):
                ctx.extra["ran"] = True
                return None
    """))
    dist = tmp_path / "my_plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[scorebench.methods]\necho-plugin = my_plugin_pkg:Echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("methods")
    cls = reg.get("echo-plugin")
    assert cls.__name__ == "Echo" and cls.name == "echo-plugin" and "star" in reg.names()
    from scorebench.method import RunContext
    c = RunContext(config=None, task=None, engine=None, run_dir=None)
    assert cls().train(c) is None and c.extra["ran"]
    sys.modules.pop("my_plugin_pkg", None)


from scorebench.engines.base import Engine  # noqa: E402


class FakeEngine(Engine):
    """Answers turn 1 wrong on even samples / right on odd ones (by problem), and every correction right."""

    def __init__(self, model, tok, task):
        self.model, self.tokenizer = model, tok
        self.answers = {task.prompt(ex): ex["answer"] for ex in task.train()}

    def trainable_model(self):
        return self.model, self.tokenizer

    def generate(self, convs, params, desc=None):
        from scorebench.engines.base import Completion
        out = []
        for conv in convs:
            ans = self.answers[conv[0]["content"]]
            comps = []
            for k in range(params.n):
                right = len(conv) > 1 or k % 2 == 1
                text = f"The answer is {ans if right else ans + 1}."
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [2]
                comps.append(Completion(text=text, token_ids=ids, prompt_ids=[1, 2, 3]))
            out.append(comps)
        return out


@pytest.mark.parametrize("name", ["star+", "pair-sft+"])
def test_sft_baseline_end_to_end_on_tiny_model(tmp_path, name, tokenizer):
    import json
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from scorebench.method import RunContext
    from scorebench.models import load
    from scorebench.rundir import RunDir
    from scorebench.tasks.arith import Arith
    tok = tokenizer
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tok)))
    task = Arith(n_train=12, n_test=4)
    cfg = SimpleNamespace(method=name, seed=0, turns=2, max_new_tokens=None, batch_size=8,
                          method_args={"n_problems": 6, "batch_size": 4, "lr": "1e-3"})
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    c = RunContext(config=cfg, task=task, engine=FakeEngine(model, tok, task), run_dir=rd)
    path = METHODS.get(name)().train(c)
    assert (path / ".complete").exists()
    load(str(path))
    stats = json.loads((rd.path / "dataset_stats.json").read_text())
    rows = [json.loads(x) for x in (rd.path / "dataset.jsonl").read_text().splitlines()]
    if name == "star+":
        assert stats["i->c"] == 6 and stats["c->c"] == 6 and len(rows) == 12  # 2 samples per problem
    else:
        assert stats["wrong->right"] == 6 and stats["right->right"] == 6 and len(rows) == 12
    assert all(r["turns"][-1]["reward"] == 1.0 for r in rows)
    assert (rd.path / "train" / "train_log.jsonl").exists()
    # validation points (issue 21): before training and after each epoch, on pool problems never trained on
    val = [json.loads(x) for x in (rd.path / "train" / "val_log.jsonl").read_text().splitlines()]
    last = json.loads((rd.path / "train" / "train_log.jsonl").read_text().splitlines()[-1])["step"]
    assert [r["step"] for r in val] == [0, last] and all(r["n"] == 2 for r in val)
    val_eps = [json.loads(x) for x in (rd.path / "train" / "val_episodes.jsonl").read_text().splitlines()]
    assert [e["step"] for e in val_eps] == [0, 0, last, last]
    from scorebench.training.validation import training_split
    pool = {e["id"] for e in training_split(task.train())[1]}
    assert pool and not pool & {r["id"].split("#")[0] for r in rows}


def test_a_micro_batch_count_asked_for_replaces_the_presets_token_cap():
    """``micro_batch_size`` and ``micro_batch_tokens`` are two ways to cut a step, and the trainer takes the token
    cap when both are set: the one a --method-arg names must replace the preset's other, or cpu-learn's cap would
    silently win over an asked-for count."""
    _, t = resolve_method_config(ctx("star", preset="cpu-learn"), StarConfig)
    assert (t.micro_batch_size, t.micro_batch_tokens) == (None, 768)
    _, t = resolve_method_config(ctx("star", preset="cpu-learn", micro_batch_size="4"), StarConfig)
    assert (t.micro_batch_size, t.micro_batch_tokens) == (4, None)
    _, t = resolve_method_config(ctx("star", micro_batch_tokens="1024"), StarConfig)  # cpu-small: 8 sequences
    assert (t.micro_batch_size, t.micro_batch_tokens) == (None, 1024)
    _, t = resolve_method_config(ctx("star", micro_batch_tokens="512", micro_batch_size="2"), StarConfig)
    assert (t.micro_batch_size, t.micro_batch_tokens) == (2, 512)  # both asked for: both kept, as before
