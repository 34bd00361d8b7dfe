"""The bench's roofline arithmetic on a hand case."""
import pytest


def test_bench_roofline_hand_case():
    """Bandwidth-bound below the knee, compute-bound above it; KV-cache bytes lower the bandwidth bound."""
    from scorebench.bench.roofline import roofline
    # 100 params, 200 bytes of weights; 1000 B/s; 10,000 FLOP/s -> compute bound = 10,000 / 200 = 50 tok/s
    assert roofline(100, 200, 1, 1000.0, 10_000.0) == pytest.approx(5.0)    # 1 x 1000 / 200
    assert roofline(100, 200, 8, 1000.0, 10_000.0) == pytest.approx(40.0)   # 8 x 1000 / 200
    assert roofline(100, 200, 64, 1000.0, 10_000.0) == pytest.approx(50.0)  # compute bound
    assert roofline(100, 200, 8, 1000.0, 10_000.0, kv_bytes=25.0) == pytest.approx(20.0)  # 8000 / (200 + 200)


def _tiny(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer),
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def test_bench_training_section_on_a_tiny_model(tokenizer):
    """The train section runs on really sampled episodes: 2 problems x 2 samples, every step timed."""
    from scorebench.bench.train import bench_training
    r = bench_training(_tiny(tokenizer), tokenizer, reps=1, problems=2, samples=2, micro=2, dtype="float32",
                       log=lambda s: None)
    assert r["episodes"] == 4 and r["sequences"] >= 4 and r["tokens"] > r["loss_tokens"] > 0
    assert r["other_dtype"] == "bfloat16" and r["dtype"] == "float32" and r["micro"] == 2 and r["reps"] == 1
    assert all(r[f"{k}_s"] > 0 for k in ("plain", "ours", "full_logits", "other", "rollout"))


def test_bench_training_numbers_on_a_hand_case(tokenizer, monkeypatch):
    """Known inputs, literal outputs: 4 episodes as 4 sequences of 10 tokens (40 tokens, 6 carrying loss or KL
    each: 24), step times set to ours 2 s, full logits 4 s, other dtype 5 s, plain 1 s; P parameters. Tokens/s are
    40 / s; FLOP/s are 8 P x 40 / s for our steps, 6 P x 40 / s for the plain step; against a ceiling of 320 P
    that is 50% / 25% / 20% / 75%."""
    from scorebench.bench import train as B
    from scorebench.training import Sequence
    seqs = [Sequence(list(range(100 + i, 110 + i)), [0.0] * 4 + [1.0] * 6, [0.0] * 4 + [0.1] * 6, str(i))
            for i in range(4)]
    seqs[1].weights[4:7] = [0.0] * 3  # KL only on three of them: still counted once
    monkeypatch.setattr(B, "sample_episodes", lambda *a, **k: ["e"] * 4)
    monkeypatch.setattr(B, "score_sequences", lambda tok, eps: seqs)
    times = iter([2.0, 4.0, 5.0, 1.0])  # the order bench_training times them in: ours, full logits, other, plain

    def timed(fn):
        fn()
        return next(times)
    monkeypatch.setattr(B, "_timed", timed)
    model = _tiny(tokenizer)
    P = sum(p.numel() for p in model.parameters())
    r = B.bench_training(model, tokenizer, reps=1, problems=2, samples=2, micro=2, dtype="float32",
                         log=lambda s: None)
    assert (r["episodes"], r["sequences"], r["tokens"], r["loss_tokens"]) == (4, 4, 40, 24)
    assert (r["ours_s"], r["full_logits_s"], r["other_s"], r["plain_s"]) == (2.0, 4.0, 5.0, 1.0)
    assert (r["ours_tok_s"], r["full_logits_tok_s"], r["other_tok_s"], r["plain_tok_s"]) == (20, 10, 8, 40)
    assert r["ours_flops"] == 160 * P and r["full_logits_flops"] == 80 * P
    assert r["other_flops"] == 64 * P and r["plain_flops"] == 240 * P
    r["rollout_s"] = 3.0
    text = "\n".join(B.report(r, ceiling=320 * P, ceiling_name="fp32"))
    rows = {line.split(" | ")[0].lstrip("| ").split(":")[0]: line for line in text.splitlines() if line.count("|") == 6}
    assert rows["plain"].endswith("| 1.00 | 40 | " + f"{240 * P / 1e9:.0f}" + " | 75% |")
    assert rows["ours"].endswith("| 2.00 | 20 | " + f"{160 * P / 1e9:.0f}" + " | 50% |")
    assert rows["ours with logits at every position (ablation)"].endswith("| 4.00 | 10 | 0 | 25% |")
    assert rows["ours in bfloat16 instead of float32"].endswith("| 5.00 | 8 | 0 | 20% |")
    assert "time per token: 0.67x" in text and "2.00x faster" in text and "float32 is 2.50x the speed" in text
    assert "**5.00 s**" in text
