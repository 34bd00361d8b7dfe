"""The transformers engine: batched sampling on CPU (or GPU), sharing the live policy object.

Why it can share the policy object: on CPU the trainer and the sampler are one process, so a method passes
its live ``model`` and every rollout samples the current weights.

Two paths:

* ``fast=True`` (default, Llama-family models: llama / mistral / qwen2): our own decode loop (the ``fast``
  package) over a snapshot of the weights in the compute dtype (bf16 where the CPU has native bf16, else the
  model's dtype), with fused QKV and gate/up projections (on a CPU reordered once into oneDNN's blocked layout,
  fp32 or, where the CPU has it natively, bf16, so no matmul re-packs its weight per call), a preallocated KV
  cache, waiting prompts prefilled together (stacked without padding, attention per prompt), one prefill per
  conversation shared by its ``n``
  samples, a two-level float64 inverse-CDF draw, and continuous refill (a finished row is replaced at once by a
  waiting sample, so the batch stays full). The residual stream and norms stay fp32; only matmul inputs are cast.
  Sampling draws from the exact softmax (temperature, nucleus top_p) with the uniform of token t of sample k of
  conversation i a pure function of (``derive_seed(seed, i, k)``, t) (``sampling.py``), so equal seeds give equal
  samples and the draw does not depend on which slot a sample lands in (bf16 logits can still differ in the last
  bits between batch sizes and prefill groupings). A finished sample's K/V is kept for the next call (within
  ``keep_kv_mb``), so a second turn prefills only what follows the first turn's answer. Two schedules
  (``decode=``): ``dynamic`` (the CPU default) shrinks the batch and the attended context to what is live;
  ``static`` decodes fixed shapes, and ``graph`` (the CUDA default) replays that fixed-shape step as one CUDA
  graph (``fast/static.py``), where launching kernels from Python, not arithmetic, bounds a small model's step.
* ``fast=False`` (or an unsupported architecture): plain transformers ``model.generate``.

Weight freshness: the snapshot is rebuilt automatically at the start of ``generate`` whenever any parameter
of the model changed (tracked by each tensor's in-place version counter and storage pointer, which
``optimizer.step()``, ``p.data = ...`` and in-place edits all bump), including LoRA adapters (peft), whose
deltas are merged into the snapshot. ``refresh()`` forces a rebuild (about 0.5 s for 135M parameters, packing
included); trainers may call it after each optimizer step but need not.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..dist import is_main
from ..registry import ENGINES
from ..seeding import derive_seed
from .base import Completion, Engine, SamplingParams
from .fast import FastLlama
from .fast.schedule import decode_mode
from .fast.weights import bf16_native  # noqa: F401  (public here before fast/ was split out)
from .sampling import inverse_cdf  # noqa: F401  (inverse_cdf: tests and callers import it from here)

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@ENGINES.register("hf")
class HFEngine(Engine):
    name = "hf"

    def __init__(self, model=None, tokenizer=None, model_name: str | None = None, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 32, threads: int | None = None, fast: bool = True,
                 compute_dtype: str = "auto", pack: bool = True, decode: str = "auto", keep_kv_mb: float = 256,
                 **_):
        if threads:
            torch.set_num_threads(threads)
        if model is None:
            from .. import models
            model, tokenizer = models.load(model_name, dtype=dtype, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.model_name, self.dtype, self.device = model_name, dtype, device
        self.batch_size = batch_size
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._runner: FastLlama | None = None
        self._pack = pack
        self.keep_kv_mb = keep_kv_mb
        self.fast = bool(fast) and FastLlama.supports(model)
        if self.fast:
            base_dtype = next(model.parameters()).dtype
            if compute_dtype == "auto":  # the weights' dtype: exact, and the same greedy episodes on any CPU and
                cd = base_dtype            # thread count (bf16 compute is one flag away, timed by `bench`)
            else:
                cd = TORCH_DTYPES[compute_dtype]
            self._runner = FastLlama(model, cd, pack=pack, decode=decode_mode(decode, model), keep_kv_mb=keep_kv_mb)
        self.last_stats: dict = {}

    @property
    def compute_dtype(self) -> str:
        if self._runner is None:
            return str(next(self.model.parameters()).dtype).replace("torch.", "")
        return str(self._runner.dtype).replace("torch.", "")

    def trainable_model(self):
        return self.model, self.tokenizer

    def use_compute_dtype(self, dtype: str) -> str:
        if self._runner is not None:
            cd = TORCH_DTYPES[dtype]
            if cd != self._runner.dtype:
                self._runner = FastLlama(self.model, cd, pack=self._pack,
                                          decode=self._runner.decode_mode, keep_kv_mb=self.keep_kv_mb)
        return self.compute_dtype

    def sync_weights(self, model) -> None:
        """Sample from ``model`` from now on: the same object is refreshed (its snapshot is rebuilt), another one
        (a trainer's PeftModel wrapping this model) replaces it."""
        if model is not self.model:
            self.model = model  # same tokenizer, so the same end-of-turn ids
            if self._runner is not None:
                self._runner = FastLlama(model, self._runner.dtype, pack=self._runner.packed or False,
                                          decode=self._runner.decode_mode, keep_kv_mb=self.keep_kv_mb)
        self.refresh()

    def release_weights(self) -> None:
        if self._runner is not None:
            self._runner.release()

    def refresh(self) -> None:
        """Rebuild the fast path's weight snapshot from the live model now. ``generate`` does this by itself
        when a parameter changed, so calling it is optional (e.g. to move the cost out of a timed region)."""
        if self._runner is not None:
            self._runner.refresh()

    def describe(self) -> dict:
        from ..device import describe
        return {"engine": self.name, "dtype": self.dtype, "compute_dtype": self.compute_dtype, **describe(self.model),
                "batch_size": self.batch_size, "threads": torch.get_num_threads(),
                "path": "fast" if self._runner is not None else "generate",
                "decode": self._runner.decode_mode if self._runner is not None else None,
                "packed": bool(self._runner is not None and self._runner.packed)}

    @torch.no_grad()
    def generate(self, conversations, params: SamplingParams, desc=None):
        prompts = [self.render(c) for c in conversations]
        if self._runner is not None:
            return self._generate_fast(prompts, params, desc)
        return self._generate_plain(prompts, params, desc)

    # -- fast path -------------------------------------------------------------------------------------------
    def _generate_fast(self, prompts, params: SamplingParams, desc):
        bar = tqdm(total=len(prompts) * params.n, desc=desc or "generate", leave=False, unit="sample",
                   disable=not is_main())
        seqs = self._runner.run(prompts, params, self.eos_ids, max(1, self.batch_size), on_done=lambda: bar.update(1))
        bar.close()
        self.last_stats = dict(self._runner.stats)
        lps = self._runner.logprobs
        return [[make_completion(self.tokenizer, prompts[i], seqs[i][k], self.eos_ids, lps[i][k])
                 for k in range(params.n)] for i in range(len(prompts))]

    # -- plain transformers generate --------------------------------------------------------------------------
    def _generate_plain(self, prompts, params: SamplingParams, desc):
        # Sort by length so rows in a batch pad little; results return in the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[Completion] | None] = [None] * len(prompts)
        rows_per_batch = max(1, self.batch_size // params.n)
        bar = tqdm(total=len(prompts), desc=desc or "generate", leave=False, unit="conv", disable=not is_main())
        was_training = self.model.training
        self.model.eval()
        try:
            for b, start in enumerate(range(0, len(order), rows_per_batch)):
                idx = order[start:start + rows_per_batch]
                torch.manual_seed(derive_seed(params.seed, "batch", b))
                comps = self._generate_batch([prompts[i] for i in idx], params)
                for j, i in enumerate(idx):
                    out[i] = comps[j * params.n:(j + 1) * params.n]
                bar.update(len(idx))
        finally:
            bar.close()
            if was_training:
                self.model.train()
        return out  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(prompts):  # left padding: every row's last prompt token sits at the same column
            ids[r, width - len(p):] = torch.tensor(p)
            mask[r, width - len(p):] = 1
        greedy = params.temperature == 0
        gen = self.model.generate(
            input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
            max_new_tokens=params.max_new_tokens, do_sample=not greedy,
            temperature=None if greedy else params.temperature, top_p=None if greedy else params.top_p,
            top_k=None, num_return_sequences=params.n, eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        comps = []
        for r in range(gen.shape[0]):
            toks = gen[r, width:].tolist()
            comps.append(make_completion(self.tokenizer, prompts[r // params.n], toks, self.eos_ids))
        return comps



def make_completion(tokenizer, prompt_ids: list[int], toks: list[int], eos_ids: list[int],
                    logprobs: list[float] | None = None) -> Completion:
    """Cut generated tokens at the first end-of-turn token (kept) — pad equals eos, so later ones are padding."""
    cut = next((k for k, t in enumerate(toks) if t in eos_ids), None)
    if cut is not None:
        toks, reason = toks[:cut + 1], "stop"
    else:
        reason = "length"
    text = tokenizer.decode(toks, skip_special_tokens=True)
    return Completion(text=text.strip(), token_ids=toks, prompt_ids=list(prompt_ids), finish_reason=reason,
                      logprobs=None if logprobs is None else list(logprobs[:len(toks)]))


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in ids:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
