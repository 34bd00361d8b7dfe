"""Shared fixtures, and the markers that select tests, applied here so no test has to remember them:

- ``e2e``: everything under tests/e2e (the CLI, subprocesses, torchrun/accelerate, the examples, the docs);
- ``gpu``: everything under tests/gpu (skipped without CUDA; scripts/gpu_check.sh runs them);
- ``model``: a test that loads the embedded model or its tokenizer (the fixtures in MODEL_FIXTURES, directly or
  through another fixture, e.g. ``tiny_model_dir``), or that says ``@pytest.mark.model`` itself;
- ``template``: a unit test whose result depends on the tokenizer, the chat template or the transformers version
  (the fixtures in TEMPLATE_FIXTURES): what ``make test-lowest`` runs under the lowest supported transformers.
  Not the engine's tests (tests/unit/engines: the engine's arithmetic against the model's own forward on given
  ids, 5 minutes of CI) nor whole runs on ``tiny_model_dir`` (they check the pipeline, not the template);
- ``slow`` (said by the test): skipped unless SCOREBENCH_SLOW=1 (``make test-full``);
- ``full`` (said by the test): what ``make test`` leaves to ``make test-full``: the multi-process runs beyond one
  two-process equivalence check, and the slowest engine case.
"""
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# fixtures that load the embedded model or its tokenizer (pytest lists a test's fixtures with their dependencies)
MODEL_FIXTURES = {"tokenizer", "tok", "mt", "tiny_model_dir", "lm_eval_run", "scorebench_turn1"}
# fixtures that hand a test the embedded tokenizer/chat template or a transformers model built from it
TEMPLATE_FIXTURES = {"tokenizer", "tok", "mt"}
NOT_TEMPLATE_FIXTURES = {"tiny_model_dir"}
NOT_TEMPLATE_AREAS = {("unit", "engines")}


def pytest_collection_modifyitems(config, items):
    slow_ok = os.environ.get("SCOREBENCH_SLOW") == "1"
    skip = pytest.mark.skip(reason="slow end-to-end test; set SCOREBENCH_SLOW=1 (make test-full)")
    for item in items:
        try:
            parts = item.path.resolve().relative_to(TESTS).parts
        except ValueError:
            parts = ("",)
        area = parts[0]
        fixtures = set(getattr(item, "fixturenames", ()))
        if area == "e2e":
            item.add_marker(pytest.mark.e2e)
        if area == "gpu":
            item.add_marker(pytest.mark.gpu)
        if fixtures & MODEL_FIXTURES and "model" not in item.keywords:
            item.add_marker(pytest.mark.model)
        if (area == "unit" and fixtures & TEMPLATE_FIXTURES and not fixtures & NOT_TEMPLATE_FIXTURES
                and tuple(parts[:2]) not in NOT_TEMPLATE_AREAS):
            item.add_marker(pytest.mark.template)
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from scorebench import models
    return AutoTokenizer.from_pretrained(models.resolve(None))


class ScriptedEngine:
    """A deterministic engine for protocol tests: answers from a function of the conversation."""
    name = "scripted"

    def __init__(self, answer, tokenizer=None):
        self.answer, self.tokenizer, self.calls = answer, tokenizer, []

    def generate(self, conversations, params, desc=None):
        from scorebench.engines.base import Completion
        self.calls.append([list(c) for c in conversations])
        return [[Completion(text=self.answer(c, k)) for k in range(params.n)] for c in conversations]

    def describe(self):
        return {"engine": self.name}


@pytest.fixture
def scripted():
    return ScriptedEngine


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A 1-layer random Llama with the embedded model's tokenizer, saved as a model directory (runs take seconds)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    d = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(cfg).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """Run in an empty directory (holding a file ``afile`` and an empty ``runs/``) where loading a model fails the
    test: for checks that must refuse bad input before any model loads or anything is written."""
    from scorebench import models

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")
    monkeypatch.setattr(models, "load", refuse)
    monkeypatch.setattr(models, "_embedded_cache", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "runs").mkdir()
    return tmp_path


@pytest.fixture
def coin_arith():
    """``arith`` graded by a coin a random tiny model can win (an even-length response, lax grading), so RL tests
    get non-zero advantages and the weights move for a reason: with every reward 0 and the policy equal to its
    reference, the exact gradient is 0 and a step changes nothing."""
    from scorebench.tasks.arith import Arith

    class CoinArith(Arith):
        def evaluate(self, example, response):
            return {"correct": len(response) % 2 == 0, "pred": None}

    return lambda **kw: CoinArith(grading="lax", **kw)
