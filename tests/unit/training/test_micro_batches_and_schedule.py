"""The trainer's batching and schedule: the paper preset's micro-batches, micro-batches by token budget, and SCoRe's
learning-rate schedule over its stage schedule."""
import pytest

from scorebench.training import TrainConfig, Trainer


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
