"""``scorebench bench``'s ``train`` section: what one SCoRe training step costs, against plain HF training.

On real sampled episodes (arith rollouts of the embedded model through the shared protocol, two turns, the
``cpu-small`` sampling settings), each row times the same tokens:

* ``plain``: ``model(input_ids, attention_mask, labels=...).loss.backward()`` per micro-batch — what a
  transformers user writes (no reference model, full-vocabulary logits at every position);
* ``ours``: ``Trainer.step`` with SCoRe's Stage II weights and a per-token ``full`` KL: policy forward + backward,
  reference forward, the vocabulary projection only at positions that carry loss or KL;
* ``ours, full logits``: the same step with the projection at every position (the ablation of that saving).

FLOP/s counts 8 x params per token for a SCoRe step (policy forward 2, backward 4, reference forward 2) and 6 x
params for the plain step, over all non-pad tokens, and is compared with the bf16 / fp32 matmul ceiling that
``bench`` measures in the same process. Machines are noisy: compare rows of one run.
"""
from __future__ import annotations

import contextlib
import copy
import tempfile
import time

import torch

from ..engines import SamplingParams
from ..engines.hf import HFEngine
from ..protocol import ProtocolConfig, run_protocol
from ..tasks.arith import Arith
from ..training import TrainConfig, Trainer, episode_to_sequences


def sample_episodes(model, tok, problems: int = 8, samples: int = 4, temperature: float = 0.7,
                    max_new_tokens: int = 64, seed: int = 0, batch: int = 32, engine=None):
    task = Arith()
    engine = engine or HFEngine(model=model, tokenizer=tok, batch_size=batch)
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, n=samples, seed=seed)
    return run_protocol(engine, task, task.train()[:problems], params, ProtocolConfig(turns=2),
                        samples_per_problem=samples, keep_ids=True, progress=False, chunk_size=problems)


def score_sequences(tok, eps):
    """Stage II's shape: both attempts carry a loss weight and a KL coefficient (the values do not change the
    cost, only which positions carry them)."""
    return [s for e in eps for s in episode_to_sequences(tok, e, [1.0, -0.5], [0.01, 0.01])]


def _plain_step(model, opt, micro_batches, pad_id, autocast) -> None:
    opt.zero_grad(set_to_none=True)
    for mb in micro_batches:
        width = max(len(s.input_ids) for s in mb)
        ids = torch.full((len(mb), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(mb):
            ids[r, :len(s.input_ids)] = torch.tensor(s.input_ids)
            mask[r, :len(s.input_ids)] = 1
        dev = next(model.parameters()).device
        ids, mask = ids.to(dev), mask.to(dev)
        labels = ids.masked_fill(mask == 0, -100)
        with autocast():
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
    opt.step()


def bench_training(model, tok, reps: int = 2, problems: int = 8, samples: int = 4, micro: int = 8,
                   dtype: str = "bfloat16", log=print, micro_tokens: int | None = None,
                   engine_batch: int = 32) -> dict:
    """Seconds per step (best of ``reps``) and tokens/s for the plain step, ours, and ours with full logits; and
    the rollouts of the step's episodes (``rollout_s``: the engine's two turns, best of ``reps`` after a first,
    untimed call that also captures a GPU's graphs), so rollouts + ours is a whole SCoRe step. ``micro_tokens``:
    micro-batches of that many padded tokens (the GPU preset's) instead of ``micro`` sequences. On a GPU the
    warm-up is a whole step (the first step at new shapes pays for allocator growth and kernel selection)."""
    log("train: sampling episodes ...")
    engine = HFEngine(model=model, tokenizer=tok, batch_size=engine_batch)
    t = time.perf_counter()
    eps = sample_episodes(model, tok, problems, samples, engine=engine)  # ends in host lists: no sync needed
    rollout_s = time.perf_counter() - t
    on_gpu = next(model.parameters()).device.type == "cuda"
    if on_gpu:  # the first call captured the decode graphs; time the same rollouts again
        rollout_s = min(_timed(lambda: sample_episodes(model, tok, problems, samples, engine=engine))
                        for _ in range(reps))
    seqs = score_sequences(tok, eps)
    tokens = sum(len(s.input_ids) for s in seqs)
    loss_tokens = sum(1 for s in seqs for w, k in zip(s.weights[1:], s.kl_weights[1:]) if w or k)
    cfg = TrainConfig(lr=1e-6, batch_size=len(seqs), micro_batch_size=micro, micro_batch_tokens=micro_tokens,
                      dtype=dtype, loss_normalization="sequences", kl_estimator="full")
    out: dict = {"sequences": len(seqs), "episodes": len(eps), "tokens": tokens, "loss_tokens": loss_tokens, "reps": reps,
                 "micro": f"{micro_tokens} tokens" if micro_tokens else micro, "dtype": dtype,
                 "threads": torch.get_num_threads(), "rollout_s": rollout_s, "engine_batch": engine_batch,
                 "device": str(next(model.parameters()).device)}
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as d:
        log("train: ours ...")
        tr = Trainer(copy.deepcopy(model), tok, cfg, d, temperature=0.7)
        micro_batches = tr.micro_batches(seqs)
        warm = seqs if on_gpu else max(micro_batches, key=lambda mb: max(len(s.input_ids) for s in mb))
        tr.step(warm)  # warm-up (CPU: the longest micro-batch, for allocator and oneDNN primitives), not timed
        out["ours_s"] = min(_timed(lambda: tr.step(seqs)) for _ in range(reps))
        log("train: ours, full logits ...")
        decoder = tr.model.get_decoder
        tr.model.get_decoder = lambda: None  # the Trainer falls back to full logits, then selects
        tr.step(warm)
        out["full_logits_s"] = min(_timed(lambda: tr.step(seqs)) for _ in range(reps))
        tr.model.get_decoder = decoder
        other = "float32" if dtype == "bfloat16" else "bfloat16"
        log(f"train: ours in {other} ...")  # why the presets' dtype "auto" picks what it picks on this machine
        tr2 = Trainer(copy.deepcopy(model), tok, TrainConfig(**{**cfg.to_dict(), "dtype": other}), d + "/other",
                      temperature=0.7)
        tr2.step(warm)
        out["other_dtype"] = other
        out["other_s"] = min(_timed(lambda: tr2.step(seqs)) for _ in range(reps))
        log("train: plain HF step ...")
        m = copy.deepcopy(tr.model).train()
        opt = torch.optim.AdamW(m.parameters(), lr=1e-6)
        dev = next(m.parameters()).device.type
        auto = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if dtype == "bfloat16" else contextlib.nullcontext
        step = lambda: _plain_step(m, opt, micro_batches, tr.pad_id, auto)  # noqa: E731
        _plain_step(m, opt, tr.micro_batches(warm), tr.pad_id, auto)
        out["plain_s"] = min(_timed(step) for _ in range(reps))
    for k in ("ours", "full_logits", "plain", "other"):
        out[f"{k}_tok_s"] = tokens / out[f"{k}_s"]
    out["ours_flops"] = 8 * params * tokens / out["ours_s"]
    out["full_logits_flops"] = 8 * params * tokens / out["full_logits_s"]
    out["plain_flops"] = 6 * params * tokens / out["plain_s"]
    out["other_flops"] = 8 * params * tokens / out["other_s"]
    return out


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def report(r: dict, ceiling: float, ceiling_name: str) -> list[str]:
    """Markdown lines for the train section; ``ceiling`` in FLOP/s (the matmul ceiling of the step's dtype)."""
    L = ["## Training: one SCoRe step vs a plain transformers step", "",
         f"{r['episodes']} sampled two-turn arith episodes ({r['episodes'] // 4} problems x 4 samples, T = 0.7, 64-token cap) as "
         f"{r['sequences']} sequences, {r['tokens']} tokens ({r['loss_tokens']} carry loss or KL); micro-batches of "
         f"{r['micro']}, {'bf16 autocast with fp32 master weights' if r['dtype'] == 'bfloat16' else 'fp32'}, "
         f"{r['threads']} threads, best of {r['reps']} step(s) after a warm-up. "
         "FLOP/s: 8 x params per token for a SCoRe step (policy forward + backward, reference forward), 6 x params "
         f"for the plain step; ceiling: the {ceiling_name} matmul ceiling above.", "",
         "| step | s / step | tokens/s | GFLOP/s | fraction of ceiling |", "|---|---|---|---|---|"]
    for key, name in (("plain", "plain: `model(ids, labels=…).loss.backward()` (no reference)"),
                      ("ours", "ours: SCoRe Stage II step (+ reference forward, full KL)"),
                      ("full_logits", "ours with logits at every position (ablation)"),
                      ("other", f"ours in {r['other_dtype']} instead of {r['dtype']}")):
        fl = r[f"{key}_flops"]
        L.append(f"| {name} | {r[f'{key}_s']:.2f} | {r[f'{key}_tok_s']:.0f} | {fl / 1e9:.0f} | "
                 f"{100 * fl / ceiling:.0f}% |")
    L += ["", f"Ours / plain, time per token: {r['plain_s'] / r['ours_s'] * 8 / 6:.2f}x the useful work per second "
          f"(ours does 8/6 of plain's FLOPs per token); logits only at loss positions: "
          f"{r['full_logits_s'] / r['ours_s']:.2f}x faster than at every position; {r['dtype']} is "
          f"{r['other_s'] / r['ours_s']:.2f}x the speed of {r['other_dtype']} here (the presets' dtype auto: "
          "bf16 on CUDA or an AMX CPU, else fp32).", "",
          f"A whole SCoRe step on {r['device']}: rollouts of the {r['episodes']} two-turn episodes (our engine, "
          f"{r['engine_batch']} slots) {r['rollout_s']:.2f} s + ours {r['ours_s']:.2f} s = "
          f"**{r['rollout_s'] + r['ours_s']:.2f} s**.", ""]
    return L
