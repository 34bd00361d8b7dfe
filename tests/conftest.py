import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SCOREBENCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow end-to-end test; set SCOREBENCH_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
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
