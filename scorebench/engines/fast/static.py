"""The fixed-shape decode step of the fast engine, and its capture as one CUDA graph.

Why: on a GPU a small model's decode step is a few hundred kernels of microseconds each, and launching them
from Python left the GPU idle most of the step (issue #12 measured our engine at 0.57x ``generate`` in fp32 at
batch 256). With every shape fixed — all ``S`` slots decoded each step, attention over the whole ``T``-position
cache with the positions past each row's context masked, the sampler's uniforms computed on the device from
(key, counter) — the step (decode, draw, advance) is captured once and replayed as one graph launch. The host
reads one [2, S] tensor a step (tokens and log-probabilities) to see which samples ended, and refills their slots.

``graph=False`` runs the same step eagerly: the CPU tests check it against the dynamic schedule and against
``generate``, so what the graph replays is tested here too; only the capture itself needs CUDA.
"""
from __future__ import annotations

import torch

from ..sampling import sample

KEEP = 2
"""Fixed-shape states kept per engine (each holds a KV cache of S x T positions, and its graph's memory)."""


class StaticBatch:
    """S slots x T positions of KV cache and the per-slot state a decode step reads and advances."""

    @classmethod
    def get(cls, runner, S: int, T: int, params) -> "StaticBatch":
        """The runner's state for this shape and sampling mode (made, and captured, on first use); the
        temperature and nucleus mass are written into it, so one graph serves every value."""
        greedy, nucleus = params.temperature == 0, params.top_p < 1
        key = (S, T, greedy, nucleus)
        st = runner.static.pop(key, None)
        if st is None:
            while len(runner.static) >= KEEP:
                runner.static.pop(next(iter(runner.static)))
            st = cls(runner, S, T, greedy, nucleus, graph=runner.decode_mode == "graph")
        runner.static[key] = st  # most recently used last
        st.temperature.fill_(params.temperature or 1.0)
        st.top_p.fill_(params.top_p)
        st.reset()
        return st

    def __init__(self, runner, S: int, T: int, greedy: bool, nucleus: bool, graph: bool):
        self.runner, self.S, self.T, self.greedy, self.nucleus = runner, S, T, greedy, nucleus
        dev = runner.device
        self.kc, self.vc = runner.kv_cache(S, T)
        self.tok, self.pos, self.key, self.ctr = (torch.zeros(S, dtype=torch.long, device=dev) for _ in range(4))
        self.temperature = torch.ones((), dtype=torch.float32, device=dev)
        self.top_p = torch.ones((), dtype=torch.float64, device=dev)
        self.out = torch.zeros(2, S, dtype=torch.float32, device=dev)  # token ids < 2^24 are exact in fp32
        runner._rope_table(T)  # grown now, not inside the capture
        self.graph = None
        if graph:
            self._capture()

    def reset(self) -> None:
        for t in (self.tok, self.pos, self.key, self.ctr):
            t.zero_()

    def _step(self) -> None:
        """Decode every slot one token, draw the next, advance. Idle slots compute too (their results are
        ignored); their position is clamped inside the cache, and what they write there is masked out and
        overwritten before a refilled sample attends to it."""
        logits = self.runner.decode(self.tok, self.pos, self.kc, self.vc, self.S, self.T)
        if self.greedy:
            nxt, lp = logits.argmax(-1), torch.zeros(self.S, dtype=torch.float32, device=logits.device)
        else:
            nxt, lp = sample(logits, self.temperature, self.top_p if self.nucleus else None, self.key, self.ctr,
                             sort_nucleus=True)
        self.tok.copy_(nxt)
        self.pos.add_(1).clamp_(max=self.T - 1)
        self.ctr.add_(1)
        self.out[0].copy_(nxt)
        self.out[1].copy_(lp)

    def _capture(self) -> None:
        # Warm-up on a side stream (allocator, cuBLAS workspaces), as torch.cuda.graphs asks, then capture.
        stream = torch.cuda.Stream(self.runner.device)
        stream.wait_stream(torch.cuda.current_stream(self.runner.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream(self.runner.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
        self.reset()

    def step(self) -> torch.Tensor:
        """One decode step for all slots; [2, S]: the drawn tokens and their log-probabilities (0 when greedy)."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        return self.out

    def place(self, placed) -> None:
        """Start samples in slots: ``placed`` = [(slot, per-layer prompt KV [n_kv, L, hd], first token, key)].
        The prompts' KV goes in with one indexed copy per layer for K and for V, whatever the number of samples."""
        dev = self.runner.device
        Ls = [p[1][0][0].shape[1] for p in placed]
        slots, lens = torch.tensor([p[0] for p in placed], device=dev), torch.tensor(Ls, device=dev)
        rows = torch.repeat_interleave(slots, lens)
        cols = torch.cat([torch.arange(L) for L in Ls]).to(dev)
        for li in range(len(self.kc)):
            self.kc[li][rows, :, :, cols] = torch.cat([p[1][li][0].transpose(0, 1) for p in placed])
            self.vc[li][rows, :, cols] = torch.cat([p[1][li][1].transpose(0, 1) for p in placed])
        self.tok[slots] = torch.tensor([p[2] for p in placed], device=dev)
        self.pos[slots] = lens
        self.key[slots] = torch.tensor([p[3] for p in placed], device=dev)
        self.ctr[slots] = 1
