"""The transformers engine: batched sampling with a KV cache, on CPU or GPU.

Why it can share the policy object: on CPU the trainer and the sampler are one process, so a method passes
its live ``model`` and every rollout samples the current weights without a copy.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..registry import ENGINES
from .base import Completion, Engine, SamplingParams


@ENGINES.register("hf")
class HFEngine(Engine):
    def __init__(self, model=None, tokenizer=None, model_name: str | None = None, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 32, threads: int | None = None, **_):
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

    def describe(self) -> dict:
        return {"engine": self.name, "dtype": self.dtype, "device": self.device, "batch_size": self.batch_size,
                "threads": torch.get_num_threads()}

    @torch.no_grad()
    def generate(self, conversations, params: SamplingParams, desc=None):
        prompts = [self.render(c) for c in conversations]
        # Sort by length so rows in a batch pad little; results return in the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[list[Completion] | None] = [None] * len(prompts)
        rows_per_batch = max(1, self.batch_size // params.n)
        bar = tqdm(total=len(prompts), desc=desc or "generate", leave=False, unit="conv")
        was_training = self.model.training
        self.model.eval()
        for b, start in enumerate(range(0, len(order), rows_per_batch)):
            idx = order[start:start + rows_per_batch]
            torch.manual_seed(params.seed * 1_000_003 + b)
            comps = self._generate_batch([prompts[i] for i in idx], params)
            for j, i in enumerate(idx):
                out[i] = comps[j * params.n:(j + 1) * params.n]
            bar.update(len(idx))
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


def make_completion(tokenizer, prompt_ids: list[int], toks: list[int], eos_ids: list[int]) -> Completion:
    """Cut generated tokens at the first end-of-turn token (kept) — pad equals eos, so later ones are padding."""
    cut = next((k for k, t in enumerate(toks) if t in eos_ids), None)
    if cut is not None:
        toks, reason = toks[:cut + 1], "stop"
    else:
        reason = "length"
    text = tokenizer.decode(toks, skip_special_tokens=True)
    return Completion(text=text.strip(), token_ids=toks, prompt_ids=list(prompt_ids), finish_reason=reason)


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in ids:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
