"""The bench's roofline arithmetic on a hand case."""
import pytest


def test_bench_roofline_hand_case():
    """Bandwidth-bound below the knee, compute-bound above it; KV-cache bytes lower the bandwidth bound."""
    from scorebench.bench import roofline
    # 100 params, 200 bytes of weights; 1000 B/s; 10,000 FLOP/s -> compute bound = 10,000 / 200 = 50 tok/s
    assert roofline(100, 200, 1, 1000.0, 10_000.0) == pytest.approx(5.0)    # 1 x 1000 / 200
    assert roofline(100, 200, 8, 1000.0, 10_000.0) == pytest.approx(40.0)   # 8 x 1000 / 200
    assert roofline(100, 200, 64, 1000.0, 10_000.0) == pytest.approx(50.0)  # compute bound
    assert roofline(100, 200, 8, 1000.0, 10_000.0, kv_bytes=25.0) == pytest.approx(20.0)  # 8000 / (200 + 200)


def test_bench_training_section_on_a_tiny_model(tokenizer):
    """The train section times the same sampled tokens three ways and reports FLOP/s against a ceiling."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from scorebench.bench_train import bench_training, report
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer),
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    r = bench_training(model, tokenizer, reps=1, problems=2, samples=2, micro=2, dtype="float32", log=lambda s: None)
    assert r["episodes"] == 4 and r["sequences"] >= 4 and r["tokens"] > r["loss_tokens"] > 0
    params = sum(p.numel() for p in model.parameters())
    assert r["other_dtype"] == "bfloat16"
    for k in ("plain", "ours", "full_logits", "other"):
        assert r[f"{k}_s"] > 0 and r[f"{k}_tok_s"] == pytest.approx(r["tokens"] / r[f"{k}_s"])
    assert r["ours_flops"] == pytest.approx(8 * params * r["tokens"] / r["ours_s"])
    text = "\n".join(report(r, ceiling=r["ours_flops"] * 2, ceiling_name="fp32"))
    assert "| 50% |" in text and "plain" in text
