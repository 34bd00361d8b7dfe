"""What the trainer trains on is what the engine sampled: token ids, temperature and random streams.

Real rollouts of the embedded SmolLM2-135M through the shared protocol, with a token cap small enough that
first attempts are cut (no end-of-turn token), checked against the exact ids the engine generated from.
"""
from __future__ import annotations

import numpy as np
import pytest

from scorebench.engines.base import SamplingParams, render_ids
from scorebench.engines.hf import HFEngine
from scorebench.protocol import Episode, ProtocolConfig, Turn, run_protocol
from scorebench.training import TrainConfig, Trainer, episode_to_sequences
from scorebench.training.sequences import end_of_turn


class _Task:
    """Three short prompts, graded by nothing in particular (the rewards are not the point here)."""
    name, kind, correction_instruction = "t", "math", "Check it and answer again."
    PROBLEMS = ["What is 2+3?", "Name a color.", "Mia has 7 pens. She buys 4 more. How many pens does Mia have now?"]

    def prompt(self, ex):
        return ex["q"]

    def meta(self, ex):
        return {}

    def evaluate_batch(self, examples, responses):
        return [{"reward": float("5" in r)} for r in responses]

    def examples(self):
        return [{"id": f"p{i}", "q": q} for i, q in enumerate(self.PROBLEMS)]


@pytest.fixture(scope="module")
def mt():
    from scorebench import models
    return models.load(None)


@pytest.fixture(scope="module")
def engine(mt):
    return HFEngine(model=mt[0], tokenizer=mt[1], compute_dtype="float32", batch_size=8)


def rollout(engine, turns, max_new, temperature=1.0, n=2, seed=0):
    task = _Task()
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new, seed=seed)
    return run_protocol(engine, task, task.examples(), params, ProtocolConfig(turns=turns), samples_per_problem=n,
                        keep_ids=True, progress=False)


def assert_every_turn_is_what_was_sampled(tok, eps):
    """Each turn's loss positions sit in a sequence whose ids are exactly prompt_ids + response_ids."""
    for e in eps:
        K = len(e.turns)
        seqs = episode_to_sequences(tok, e, [float(t + 1) for t in range(K)], [0.5] * K)
        for t, turn in enumerate(e.turns):
            want = list(turn.prompt_ids) + list(turn.response_ids)
            hits = [s for s in seqs if len(s.input_ids) >= len(want) and s.input_ids[:len(want)] == want
                    and s.weights[len(turn.prompt_ids):len(want)] == [float(t + 1)] * len(turn.response_ids)]
            assert hits, (e.id, t)
            s = hits[0]
            assert s.weights[:len(turn.prompt_ids)].count(float(t + 1)) == 0  # the prompt carries no weight
        # every weighted position of every sequence belongs to some turn's response
        total = sum(1 for s in seqs for w in s.weights if w)
        assert total == sum(len(t.response_ids) for t in e.turns)


@pytest.mark.parametrize("turns", [2, 3])
def test_capped_first_attempts_train_on_the_sampled_context(engine, turns):
    """With a 6-token cap every attempt is cut (no end-of-turn id); the protocol renders the next prompt from the
    text, closing the cut turn with <|im_end|>, so gluing the next turn after the cut ids trains on a context
    nobody sampled from. Each turn must be trained exactly as prompt_ids + response_ids."""
    tok = engine.tokenizer
    eps = rollout(engine, turns, max_new=6)
    cut = [t for e in eps for t in e.turns[:-1] if t.finish_reason == "length"]
    assert len(cut) >= 0.8 * sum(len(e.turns) - 1 for e in eps)  # nearly all (a short answer can end in 6)
    eot = end_of_turn(tok)
    assert all(eot not in t.response_ids for t in cut)
    assert_every_turn_is_what_was_sampled(tok, eps)


def test_uncapped_turns_share_one_sequence(engine):
    """When a turn ends with its end-of-turn id and the text re-renders to the same ids, the next prompt
    extends the sequence: one sequence per episode, no duplicated prompt tokens."""
    tok = engine.tokenizer
    eps = rollout(engine, 2, max_new=48, temperature=0.0, n=1)
    merged = 0
    for e in eps:
        t1, t2 = e.turns
        seqs = episode_to_sequences(tok, e, [1.0, 1.0])
        if t2.prompt_ids[:len(t1.prompt_ids) + len(t1.response_ids)] == t1.prompt_ids + t1.response_ids:
            assert len(seqs) == 1 and seqs[0].input_ids == t2.prompt_ids + t2.response_ids
            merged += 1
        else:
            assert len(seqs) == 2
    assert merged >= 1
    assert_every_turn_is_what_was_sampled(tok, eps)


def test_retokenized_response_is_not_glued(tokenizer):
    """A response whose sampled ids are not how its text tokenizes (here: "hello" spelt one character per
    token): the next turn's prompt, rendered from text, does not extend the sampled ids, so it is its own
    sequence, exactly the ids the engine would prompt with."""
    tok = tokenizer
    eot = end_of_turn(tok)
    p1 = render_ids(tok, [{"role": "user", "content": "Say hello."}])
    spelt = [tok.convert_tokens_to_ids(c) for c in "hello"] + [eot]
    assert spelt[:-1] != tok("hello", add_special_tokens=False)["input_ids"]
    p2 = render_ids(tok, [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "Again."}])
    r2 = tok("hello", add_special_tokens=False)["input_ids"] + [eot]
    ep = Episode("e", [Turn("Say hello.", "hello", prompt_ids=p1, response_ids=spelt),
                       Turn("Again.", "hello", prompt_ids=p2, response_ids=r2)])
    a, b = episode_to_sequences(tok, ep, [1.0, 2.0])
    assert a.input_ids == p1 + spelt and a.weights == [0.0] * len(p1) + [1.0] * len(spelt)
    assert b.input_ids == p2 + r2 and b.weights == [0.0] * len(p2) + [2.0] * len(r2)
    assert a.group == b.group == "e"


def test_trainer_logprobs_are_the_samplers(mt, engine, tmp_path):
    """Rollouts at T = 0.7: the trainer's per-token log-probabilities (what the policy gradient differentiates)
    equal the log of the probabilities the sampler drew each token with."""
    tok = engine.tokenizer
    eps = rollout(engine, 2, max_new=12, temperature=0.7, n=1)
    seqs = [s for e in eps for s in episode_to_sequences(tok, e, [1.0, 1.0])]
    trainer = Trainer(mt[0], tok, TrainConfig(batch_size=8), tmp_path, ref_model=False, temperature=0.7)
    got = trainer.token_logprobs(seqs)
    # each sequence ends with the turn it was built for: exactly that turn's prompt + response ids (matching by
    # the response alone is ambiguous when both attempts sampled the same tokens)
    sampled = [t.logprobs for s in seqs for e in eps if e.id == s.group for t in e.turns
               if s.input_ids == list(t.prompt_ids) + list(t.response_ids)]
    assert len(sampled) == len(seqs)
    for g, want in zip(got, sampled):
        assert len(g) >= len(want)
        np.testing.assert_allclose(g[-len(want):], want, atol=2e-3)
    # at T = 1 the same tokens have other log-probabilities: the check can fail
    trainer.temperature = 1.0
    far = trainer.token_logprobs(seqs)
    assert max(abs(a - b) for g, w in zip(far, sampled) for a, b in zip(g[-len(w):], w)) > 0.05


@pytest.mark.parametrize("amx", [False, True])
def test_rollouts_are_sampled_in_the_trainers_precision(mt, tmp_path, monkeypatch, amx):
    """The default dtypes of a CPU without AMX (trainer fp32) and with AMX (trainer bf16 autocast): the RL loop's
    rule (the engine computes in the trainer's resolved dtype) makes the trainer's per-token log-probabilities
    equal the sampler's within 2e-3 on average. Before it, the engine's own default (bf16 on any CPU with native
    bf16) against an fp32 trainer was 0.02 off on average, up to 0.64; bf16 against bf16 0.018 (logits rounded)."""
    from scorebench.training import config as tconfig
    from scorebench.training.rl import rollout_dtype
    monkeypatch.setattr(tconfig, "cpu_bf16_fast", lambda: amx)
    tok = mt[1]
    trainer = Trainer(mt[0], tok, TrainConfig(batch_size=8, dtype="auto"), tmp_path, ref_model=False,
                      temperature=0.7)
    engine = HFEngine(model=mt[0], tokenizer=tok, batch_size=8)
    assert rollout_dtype(engine, trainer) == ("bfloat16" if amx else "float32") == engine.compute_dtype
    eps = rollout(engine, 2, max_new=12, temperature=0.7, n=1)
    seqs = [s for e in eps for s in episode_to_sequences(tok, e, [1.0, 1.0])]
    got = trainer.token_logprobs(seqs)
    sampled = [t.logprobs for s in seqs for e in eps if e.id == s.group for t in e.turns
               if s.input_ids == list(t.prompt_ids) + list(t.response_ids)]
    gaps = np.concatenate([np.abs(np.array(g[-len(w):]) - np.array(w)) for g, w in zip(got, sampled)])
    assert len(sampled) == len(seqs) and gaps.size > 20
    # fp32 (no AMX): the same arithmetic on both sides. bf16 (AMX): measured 2.6e-3 on average, 0.015 at most
    # (0.018 / 0.14 with bf16 logits, before both sides computed the output layer in fp32); the rest is attention
    # rounded differently by the engine's kernels and HF's under autocast — short of the 2e-3 asked for.
    assert gaps.mean() < (3e-3 if amx else 2e-3), (gaps.mean(), gaps.max())
    if not amx:
        assert gaps.max() < 2e-3


def test_every_turn_draws_from_its_own_stream(scripted):
    """Turn 2 must not reuse turn 1's seed (episode 0 then replays its first attempt's draws), and chunks must
    not reuse each other's."""
    seeds = []

    class Recording(scripted):
        def generate(self, conversations, params, desc=None):
            seeds.append(params.seed)
            return super().generate(conversations, params, desc)

    task = _Task()
    eng = Recording(lambda c, k: "5")
    run_protocol(eng, task, task.examples(), SamplingParams(temperature=1.0, seed=3), ProtocolConfig(turns=3),
                 samples_per_problem=2, chunk_size=2, progress=False)
    assert len(seeds) == 6 and len(set(seeds)) == 6  # 2 chunks x 3 turns, all different


def test_same_seed_same_tokens_distinct_rows(engine):
    a = rollout(engine, 2, max_new=8, temperature=1.0, n=2, seed=5)
    b = rollout(engine, 2, max_new=8, temperature=1.0, n=2, seed=5)
    assert [[t.response_ids for t in e.turns] for e in a] == [[t.response_ids for t in e.turns] for e in b]
    # no episode's second attempt replays its first attempt's uniforms: the engine's generators are seeded by
    # (seed, conversation, sample) under a per-turn seed, all distinct
    from scorebench.seeding import derive_seed
    keys = {derive_seed(s, i, k) for s in (derive_seed(5, "turn", t, "p0") for t in (0, 1)) for i in range(6)
            for k in range(2)}
    assert len(keys) == 24


def test_uncut_delta_by_hand():
    from scorebench.metrics import compute

    def ep(r1, r2, cut1=False):
        return Episode("x", [Turn("q", "a", reward=r1, finish_reason="length" if cut1 else "stop"),
                             Turn("p", "b", reward=r2)])
    eps = [ep(0, 1, cut1=True), ep(0, 1, cut1=True), ep(0, 1), ep(1, 1), ep(1, 0), ep(0, 0)]
    m = compute(eps, n_bootstrap=50)
    assert m["delta"] == pytest.approx(2 / 6)          # three i->c, one c->i over six
    assert m["n_uncut"] == 4 and m["delta_uncut"] == pytest.approx(0.0)  # one i->c, one c->i over four
    lo, hi = m["ci95"]["delta_uncut"]
    assert lo <= 0.0 <= hi


def test_paper_preset_micro_batches():
    from scorebench.training import load_preset
    p = load_preset("paper")
    cfg = TrainConfig.from_dict({k: v for k, v in p.items() if not k.startswith("_") and not isinstance(v, dict)})
    assert cfg.batch_size == 512 and cfg.micro <= 64


def test_token_budget_micro_batches(tokenizer, tmp_path):
    from scorebench.training import Sequence
    from transformers import LlamaConfig, LlamaForCausalLM
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)))
    tr = Trainer(model, tokenizer, TrainConfig(batch_size=6, micro_batch_tokens=40), tmp_path, ref_model=False)
    batch = [Sequence([1] * n, [1.0] * n, [0.0] * n) for n in (30, 5, 12, 8, 20, 3)]
    mbs = tr.micro_batches(batch)
    assert sorted(len(s.input_ids) for mb in mbs for s in mb) == [3, 5, 8, 12, 20, 30]
    for mb in mbs:
        assert len(mb) == 1 or len(mb) * max(len(s.input_ids) for s in mb) <= 40


def test_score_lr_schedule_spans_the_stage_schedule(tokenizer, tmp_path):
    """A cosine schedule in SCoRe decays over the stage schedule's steps, not TrainConfig.steps (3000)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from scorebench.training.rl import make_trainer
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)))
    tr = make_trainer(model, tokenizer, TrainConfig(lr_schedule="cosine", temperature=0.7), tmp_path, 10)
    assert tr.temperature == 0.7
    assert tr._lr_factor(5) == pytest.approx(0.5) and tr._lr_factor(10) == pytest.approx(0.0)
