"""Shared prompts computed once per optimizer step.

A policy-gradient step trains on several samples of each prompt (SCoRe: 4 per problem), and every one of those
sequences starts with the same prompt tokens, which carry neither a loss weight nor a KL coefficient. Run
whole, the decoder computes that prompt once per sample — forward, backward, and the reference's forward. Here
each distinct prompt runs once per step: its keys and values enter every sequence that starts with it as a
past (a cache), and the sequences themselves run only from where the prompt ends. Measured on a 16 x 4 SCoRe
step: a sixth of the decoder's tokens (``results/signal-arith.md`` §6).

Gradients: the prompt's keys and values are leaves during the micro-batches, so each micro-batch's backward
adds into their ``.grad``; at the end of the step the prompts run once more, with gradients, and those summed
gradients are pushed through them (``backward``). That is the gradient of the unshared computation — the
prompt's keys and values are the only way its tokens reach the loss — at one extra prompt forward, and without
holding a prompt's activations across the step. ``tests/unit/training/test_shared_prompts.py`` checks loss and
gradients against the unshared step.

Where it does not apply (the trainer falls back to whole sequences): a prompt no two sequences share, gradient
checkpointing (transformers drops a past under it), a multi-process run (the prompt's backward would come after
the gradients were averaged), models without the decoder / output-layer split or with a cache other than
full attention in every layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sequences import Sequence


def trained_from(s: Sequence) -> int:
    """Number of leading tokens whose decoder outputs no loss needs: the positions before the one that
    predicts the first token with a loss weight or KL coefficient (that position's output is needed)."""
    for t, (w, k) in enumerate(zip(s.weights, s.kl_weights)):
        if w or k:
            return max(0, t - 1)
    return 0


def plan(batch: list[Sequence]) -> tuple[list[tuple[int, ...]], list[int]]:
    """(prompts, which): the prompts shared by two or more sequences of ``batch`` and, per sequence, the index
    of the longest of them it starts with (-1: none). A prompt is a sequence's untrained head
    (``trained_from``); a sequence whose own head is longer (e.g. a second attempt that starts a sequence of
    its own) still shares any shared prompt its head starts with."""
    heads = [tuple(s.input_ids[:trained_from(s)]) for s in batch]
    counts: dict[tuple[int, ...], int] = {}
    for h in heads:
        if h:
            counts[h] = counts.get(h, 0) + 1
    shared = sorted((h for h, c in counts.items() if c > 1), key=len, reverse=True)
    which = [next((j for j, p in enumerate(shared) if h[:len(p)] == p), -1) for h in heads]
    used = sorted({j for j in which if j >= 0})
    remap = {j: i for i, j in enumerate(used)}
    return [shared[j] for j in used], [remap.get(j, -1) for j in which]


@dataclass
class Past:
    """What one micro-batch attends to before its own tokens: per decoder layer (keys, values) of shape
    [rows, kv_heads, width, head_dim], ``mask`` [rows, width] (1 = a prompt token), and ``start`` [rows], each
    row's first position (its prompt's length; 0 without one)."""
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    start: torch.Tensor


class SharedPrompts:
    """The shared prompts of one step, for the policy (keys/values as gradient-collecting leaves) and the
    reference (plain tensors). ``run(module, ids, mask, grad)`` is the trainer's prompt forward, returning
    per-layer (keys, values); the trainer supplies it so that autocast, the adapter-disabled reference and
    device placement stay its own."""

    def __init__(self, batch: list[Sequence], run, pad_id: int, device, reference: bool):
        self.prompts, self.which = plan(batch)
        self._index = {id(s): j for s, j in zip(batch, self.which)}
        self._run, self.device = run, device
        self.leaves, self.ref = [], None
        if not self.prompts:
            return
        width = max(len(p) for p in self.prompts)
        self.ids = torch.full((len(self.prompts), width), pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(self.prompts), width), dtype=torch.long)
        for r, p in enumerate(self.prompts):  # right padding: the prompt's own forward needs no mask
            self.ids[r, :len(p)] = torch.tensor(p)
            self.mask[r, :len(p)] = 1
        self.ids, self.mask = self.ids.to(device), self.mask.to(device)
        with torch.no_grad():
            self.leaves = [(k.detach().requires_grad_(True), v.detach().requires_grad_(True))
                           for k, v in run("policy", self.ids, self.mask)]
            self.ref = run("reference", self.ids, self.mask) if reference else None

    def start(self, s: Sequence) -> int:
        """Where ``s`` starts in the micro-batch (the length of its shared prompt, 0 without one)."""
        j = self._index.get(id(s), -1)
        return len(self.prompts[j]) if j >= 0 else 0

    def past(self, batch: list[Sequence], reference: bool = False) -> Past | None:
        """The past of a micro-batch (None when none of its sequences has a shared prompt)."""
        which = [self._index.get(id(s), -1) for s in batch]
        if all(j < 0 for j in which):
            return None
        idx = torch.tensor([max(j, 0) for j in which], device=self.device)
        has = torch.tensor([j >= 0 for j in which], device=self.device)
        mask = self.mask[idx] * has[:, None]
        kv = self.ref if reference else self.leaves
        return Past([(k[idx], v[idx]) for k, v in kv], mask, mask.sum(-1))

    def backward(self) -> None:
        """Push the gradients the micro-batches left on the prompts' keys and values through the prompts."""
        grads = [(k.grad, v.grad) for k, v in self.leaves]
        if all(g is None for pair in grads for g in pair):
            return
        outs = self._run("policy", self.ids, self.mask, grad=True)
        tensors, grad_tensors = [], []
        for (k, v), (gk, gv) in zip(outs, grads):
            for t, g in ((k, gk), (v, gv)):
                if g is not None:
                    tensors.append(t)
                    grad_tensors.append(g.to(t.dtype))
        torch.autograd.backward(tensors, grad_tensors)
        self.leaves = None
