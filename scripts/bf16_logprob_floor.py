"""How close can a bf16 sampler's per-token log-probabilities be to a bf16 trainer's? (results/signal-arith.md §4)

Real rollouts of the embedded model on `arith` train problems (6 problems x 4 samples, two turns, T = 0.7,
64-token cap), sampled by the engine in bf16 and scored by the trainer under bf16 autocast, as an RL step does;
then the same comparison split into its parts, all on this CPU:

- sampler vs trainer (bf16 both): what the issue asks to be within 2e-3 per token;
- trainer bf16 vs trainer fp32: bf16's own error, the size a gap between two unrelated bf16 computations takes;
- trainer bf16 on each sequence alone vs in padded micro-batches;
- HF's model (what the trainer runs) on a prefix vs on the whole sequence, the same positions: a decoder that
  samples one token at a time sees prefixes, a trainer sees whole sequences;
- the engine vs HF's model on the *same* input (its prefill vs HF's forward), bf16 both.

``--fp32-matmul bf16`` asks the same of a middle precision: fp32 tensors everywhere (trainer and sampler both in
"float32"), but every oneDNN matmul rounds its inputs to bf16 and accumulates in fp32
(``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``; AMX-fast, outputs not rounded). Its "fp32" rows are
then the exact fp32 trainer (the flag back at "ieee").

    OMP_NUM_THREADS=1 python scripts/bf16_logprob_floor.py --out results/signal-arith/bf16-floor.json
    OMP_NUM_THREADS=1 python scripts/bf16_logprob_floor.py --fp32-matmul bf16 --out results/signal-arith/bf32-floor.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def gap(a, b) -> dict:
    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {"mean": float(d.mean()), "max": float(d.max()), "tokens": int(d.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=6)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--fp32-matmul", choices=["bf16"], help="fp32 tensors, oneDNN matmuls on bf16-rounded inputs")
    a = ap.parse_args()
    mid = a.fp32_matmul is not None
    mm = torch.backends.mkldnn.matmul

    if mid:
        mm.fp32_precision = a.fp32_matmul

    from scorebench import models
    from scorebench.bench.train import sample_episodes
    from scorebench.engines.fast.model import FastLlama
    from scorebench.engines.hf import HFEngine
    from scorebench.machine import describe
    from scorebench.rundir import git_commit
    from scorebench.training import TrainConfig, Trainer, episode_to_sequences
    from scorebench.training import config as tconfig

    tconfig.cpu_bf16_fast = lambda: True  # the trainer's `auto` picks bf16 autocast whatever this CPU is
    model, tok = models.load(None)
    low = torch.float32 if mid else torch.bfloat16
    trainer = Trainer(model, tok, TrainConfig(batch_size=8, dtype="float32" if mid else "auto"), tempfile.mkdtemp(),
                      ref_model=False, temperature=0.7)
    engine = HFEngine(model=model, tokenizer=tok, batch_size=32)
    engine.use_compute_dtype(str(low).removeprefix("torch."))  # what rl.rollout_dtype gives under the trainer
    eps = sample_episodes(model, tok, problems=a.problems, samples=a.samples, engine=engine)
    seqs = [s for e in eps for s in episode_to_sequences(tok, e, [1.0, 1.0])]
    sampled = [t.logprobs for s in seqs for e in eps if e.id == s.group for t in e.turns
               if s.input_ids == list(t.prompt_ids) + list(t.response_ids)]
    assert len(sampled) == len(seqs)

    def tails(got):
        return np.concatenate([np.asarray(g[-len(w):]) for g, w in zip(got, sampled)])

    S = np.concatenate([np.asarray(w) for w in sampled])
    bf = tails(trainer.token_logprobs(seqs))
    alone = tails([trainer.token_logprobs([s])[0] for s in seqs])
    fp32 = Trainer(model, tok, TrainConfig(batch_size=8, dtype="float32"), tempfile.mkdtemp(), ref_model=False,
                   temperature=0.7)
    with _flag(mm, "ieee"):  # the exact rows at full fp32 whatever the flag is
        f32 = tails(fp32.token_logprobs(seqs))

    # HF's forward (bf16 autocast, fp32 output layer as the trainer) on prefixes vs whole sequences, and the
    # engine's prefill on the same prefixes: the first 30 response positions of 4 sequences
    runner = FastLlama(model, low, pack=engine._runner.packed)
    runner.refresh()
    model.eval()

    def hf_logprobs(ids):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=not mid):
            h = model.model(torch.tensor([ids])).last_hidden_state[0]
        with torch.no_grad():
            return F.log_softmax(F.linear(h.float(), model.lm_head.weight.float()) / 0.7, -1)

    whole, prefix, eng = [], [], []
    for s in seqs[:4]:
        ids = s.input_ids
        full = hf_logprobs(ids)
        start = next(i for i, w in enumerate(s.weights) if w)
        for i in range(start, min(start + 30, len(ids))):
            pre = hf_logprobs(ids[:i])[-1]
            with torch.no_grad():
                lp = F.log_softmax(runner.prefill(ids[:i])[1].float() / 0.7, -1)
            whole.append(float(full[i - 1, ids[i]]))
            prefix.append(float(pre[ids[i]]))
            eng.append(float(lp[ids[i]]))
    out = {
        "linear_ms_768x576x1536": linear_ms(mm),
        "sampler_vs_trainer_bf16": gap(S, bf),
        "trainer_bf16_vs_fp32": gap(bf, f32),
        "sampler_bf16_vs_trainer_fp32": gap(S, f32),
        "trainer_bf16_alone_vs_micro_batched": gap(alone, bf),
        "hf_bf16_prefix_vs_whole_sequence": gap(prefix, whole),
        "engine_vs_hf_same_prefix_bf16": gap(eng, prefix),
        "machine": describe(), "git_commit": git_commit(),
        "fp32_matmul_precision": a.fp32_matmul or "ieee",
        "command": "OMP_NUM_THREADS=1 python scripts/bf16_logprob_floor.py"
                   + (f" --fp32-matmul {a.fp32_matmul}" if mid else "") + (f" --out {a.out}" if a.out else ""),
    }
    print(json.dumps(out, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1) + "\n")


def linear_ms(mm) -> dict:
    """One training-shaped linear (768 rows of SmolLM2's 576 into its 1,536-wide MLP), best of 5 x 10 calls, in
    fp32, in fp32 with bf16 matmul inputs, and under bf16 autocast: what each precision's matmuls cost here."""
    import time

    x, w = torch.randn(768, 576), torch.randn(1536, 576) / 24

    def best(ctx, value):
        with _flag(mm, value), ctx:
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                for _ in range(10):
                    F.linear(x, w)
                ts.append((time.perf_counter() - t) / 10 * 1e3)
        return round(min(ts), 3)

    return {"fp32": best(contextlib.nullcontext(), "ieee"), "fp32_bf16_inputs": best(contextlib.nullcontext(), "bf16"),
            "bf16_autocast": best(torch.autocast("cpu", dtype=torch.bfloat16), "ieee")}


@contextlib.contextmanager
def _flag(mm, value: str):
    old, mm.fp32_precision = mm.fp32_precision, value
    try:
        yield
    finally:
        mm.fp32_precision = old


if __name__ == "__main__":
    main()
