"""The transformers engine: batched sampling on CPU (or GPU), sharing the live policy object.

Why it can share the policy object: on CPU the trainer and the sampler are one process, so a method passes
its live ``model`` and every rollout samples the current weights.

Two paths:

* ``fast=True`` (default, Llama-family models: llama / mistral / qwen2): our own decode loop over a
  snapshot of the weights in the compute dtype (bf16 where the CPU has native bf16, else the model's dtype),
  with fused QKV and gate/up projections (on a bf16-native CPU reordered once into oneDNN's blocked layout, so
  no matmul re-packs its weight per call), a preallocated KV cache, waiting prompts prefilled together (stacked
  without padding, attention per prompt), one prefill per conversation shared by its ``n`` samples, a two-level
  float64 inverse-CDF draw, and continuous refill (a finished row is replaced at once by a waiting sample, so
  the batch stays full). The residual stream and norms stay fp32; only matmul inputs are cast. Sampling draws from the
  exact softmax (temperature, nucleus top_p) with the uniform of token t of sample k of conversation i a pure
  function of (``derive_seed(seed, i, k)``, t) (``sampling.py``), so equal seeds give equal samples and the draw
  does not depend on which slot a sample lands in (bf16 logits can still differ in the last bits between batch
  sizes and prefill groupings). Two schedules (``decode=``): ``dynamic`` (the CPU default) shrinks the batch and
  the attended context to what is live; ``static`` decodes fixed shapes, and ``graph`` (the CUDA default)
  replays that fixed-shape step as one CUDA graph (``static.py``), where launching kernels from Python, not
  arithmetic, bounds a small model's step.
* ``fast=False`` (or an unsupported architecture): plain transformers ``model.generate``.

Weight freshness: the snapshot is rebuilt automatically at the start of ``generate`` whenever any parameter
of the model changed (tracked by each tensor's in-place version counter and storage pointer, which
``optimizer.step()``, ``p.data = ...`` and in-place edits all bump), including LoRA adapters (peft), whose
deltas are merged into the snapshot. ``refresh()`` forces a rebuild (about 0.5 s for 135M parameters, packing
included); trainers may call it after each optimizer step but need not.
"""
from __future__ import annotations

import itertools
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..dist import is_main
from ..registry import ENGINES
from ..seeding import derive_seed
from .base import Completion, Engine, SamplingParams
from .sampling import inverse_cdf, sample  # noqa: F401  (inverse_cdf: tests and callers import it from here)

_FAST_TYPES = ("llama", "mistral", "qwen2")
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PREFILL_PROMPTS = 16
"""At most this many waiting prompts are prefilled together (their samples then wait in ``prefix``)."""
PREFILL_TOKENS = 2048
"""... and at most this many prompt tokens."""


def bf16_native() -> bool:
    """True when this CPU has native bf16 matmul (AVX-512 bf16 / AMX), where bf16 decoding pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - old torch
        return False


@ENGINES.register("hf")
class HFEngine(Engine):
    name = "hf"

    def __init__(self, model=None, tokenizer=None, model_name: str | None = None, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 32, threads: int | None = None, fast: bool = True,
                 compute_dtype: str = "auto", pack: bool = True, decode: str = "auto", **_):
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
        self._runner: _FastLlama | None = None
        self._pack = pack
        self.fast = bool(fast) and _FastLlama.supports(model)
        if self.fast:
            base_dtype = next(model.parameters()).dtype
            if compute_dtype == "auto":  # the weights' dtype: exact, and the same greedy episodes on any CPU and
                cd = base_dtype            # thread count (bf16 compute is one flag away, timed by `bench`)
            else:
                cd = TORCH_DTYPES[compute_dtype]
            self._runner = _FastLlama(model, cd, pack=pack, decode=_decode_mode(decode, model))
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
                self._runner = _FastLlama(self.model, cd, pack=self._pack,
                                          decode=self._runner.decode_mode)
        return self.compute_dtype

    def sync_weights(self, model) -> None:
        """Sample from ``model`` from now on: the same object is refreshed (its snapshot is rebuilt), another one
        (a trainer's PeftModel wrapping this model) replaces it."""
        if model is not self.model:
            self.model = model  # same tokenizer, so the same end-of-turn ids
            if self._runner is not None:
                self._runner = _FastLlama(model, self._runner.dtype, pack=self._runner.packed or False,
                                          decode=self._runner.decode_mode)
        self.refresh()

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


DECODE_MODES = ("auto", "dynamic", "static", "graph")


def _decode_mode(name: str, model) -> str:
    """``auto``: ``graph`` on CUDA, ``dynamic`` elsewhere (see ``_FastLlama.run``); ``graph`` needs CUDA."""
    if name not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {name!r}")
    on_gpu = next(model.parameters()).device.type == "cuda"
    if name == "auto":
        return "graph" if on_gpu else "dynamic"
    if name == "graph" and not on_gpu:
        raise ValueError("decode='graph' captures CUDA graphs: the model must be on a CUDA device")
    return name


def _base_model(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    if hasattr(model, "get_base_model"):
        try:
            return model.get_base_model()
        except Exception:
            pass
    return model


def _weight(mod) -> torch.Tensor:
    """A layer's effective weight: the plain weight, or for a peft LoRA layer base + active adapter deltas."""
    if hasattr(mod, "base_layer"):
        w = _weight(mod.base_layer)
        if not getattr(mod, "merged", False) and not getattr(mod, "disable_adapters", False):
            for name in getattr(mod, "active_adapters", []) or []:
                if name in getattr(mod, "lora_A", {}) or name in getattr(mod, "lora_embedding_A", {}):
                    w = w + mod.get_delta_weight(name).to(w.dtype)
        return w
    return mod.weight


def _bias(mod):
    while hasattr(mod, "base_layer"):
        mod = mod.base_layer
    return getattr(mod, "bias", None)


class _FastLlama:
    """Decoding for Llama-family models from a snapshot of their weights (see the module docstring)."""

    def __init__(self, model, dtype: torch.dtype, pack: bool = True, decode: str = "dynamic"):
        self.model, self.dtype, self.decode_mode = model, dtype, decode
        m = _base_model(model)
        cfg = m.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.n_layers = cfg.num_hidden_layers
        rot = m.model.rotary_emb
        self.inv_freq = rot.inv_freq.detach().float().cpu().clone()
        self.rope_scale = float(getattr(rot, "attention_scaling", 1.0) or 1.0)
        self.device = next(model.parameters()).device
        self.packed = pack and _can_pack(dtype, self.device)
        self.batched_attention = self.device.type == "cuda"
        """Prefill attention for all stacked prompts in one masked call (block-diagonal causal mask) instead of a
        call per prompt: on a GPU the per-prompt calls are launch-bound; on a CPU the mask's wasted work (every
        prompt attends over the whole stack) costs more than the loop, so the CPU keeps the loop."""
        on_gpu = self.device.type == "cuda"
        self.prefill_prompts = 128 if on_gpu else PREFILL_PROMPTS
        self.prefill_tokens = 8192 if on_gpu else PREFILL_TOKENS
        self._fingerprint = None
        self._cos = self._sin = None
        self.static: dict = {}
        """Fixed-shape decode states (``static.StaticBatch``) by shape; their CUDA graphs read this snapshot's
        tensors by address, so a refresh copies new weights into them rather than replacing them."""
        self.stats: dict = {}

    @staticmethod
    def supports(model) -> bool:
        m = _base_model(model)
        cfg = getattr(m, "config", None)
        if cfg is None or getattr(cfg, "model_type", None) not in _FAST_TYPES:
            return False
        if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "use_sliding_window", False):
            return False
        if getattr(cfg, "model_type", None) == "mistral" and getattr(cfg, "sliding_window", None):
            return False
        inner = getattr(m, "model", None)
        return inner is not None and hasattr(inner, "layers") and hasattr(inner, "rotary_emb") \
            and hasattr(inner.rotary_emb, "inv_freq")

    # -- weights ---------------------------------------------------------------------------------------------
    def _current_fingerprint(self):
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def maybe_refresh(self) -> None:
        if self._fingerprint != self._current_fingerprint():
            self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        m = _base_model(self.model)
        dt = self.dtype
        layers = []
        for layer in m.model.layers:
            a, f = layer.self_attn, layer.mlp
            qkv = torch.cat([_weight(a.q_proj), _weight(a.k_proj), _weight(a.v_proj)], 0).to(dt).contiguous()
            bs = [_bias(a.q_proj), _bias(a.k_proj), _bias(a.v_proj)]
            qkv_b = torch.cat(bs).to(dt) if all(b is not None for b in bs) else None
            gu = torch.cat([_weight(f.gate_proj), _weight(f.up_proj)], 0).to(dt).contiguous()
            layers.append((layer.input_layernorm.weight.detach().float(), qkv, qkv_b,
                           _weight(a.o_proj).to(dt).contiguous(), _bias(a.o_proj),
                           layer.post_attention_layernorm.weight.detach().float(), gu,
                           _weight(f.down_proj).to(dt).contiguous()))
        self.norm = m.model.norm.weight.detach().float()
        self.embed = _weight(m.get_input_embeddings()).detach()
        # The output layer stays fp32 whatever the compute dtype: bf16 logits are rounded to ~0.06 nats, more than
        # any other step loses, and the trainer's loss computes them in fp32 too (one precision for both sides).
        self.lm_head = _weight(m.get_output_embeddings()).float().contiguous()
        if self.packed:  # indices 1, 3, 6, 7 of a layer tuple are its matmul weights
            layers = [tuple(_pack(w) if j in (1, 3, 6, 7) else w for j, w in enumerate(lw)) for lw in layers]
        snapshot = (layers, self.norm, self.embed, self.lm_head)
        if any(st.graph is not None for st in self.static.values()):
            if _copy_into(self._snapshot, snapshot):
                snapshot = self._snapshot  # same addresses, new values: the captured graphs stay valid
            else:
                self.static.clear()  # a tensor changed shape: captured graphs would read the old ones
        self._snapshot = snapshot
        self.layers, self.norm, self.embed, self.lm_head = snapshot
        self._fingerprint = self._current_fingerprint()

    def _linear(self, x, w, b=None):
        """``F.linear``, or oneDNN's linear on a weight reordered once at snapshot time when packed: a bf16
        matmul with few rows otherwise reorders the whole weight on every call, which cost more than the
        multiply itself (measured: 2-3x slower per layer at 8-32 rows). Same arithmetic, same results."""
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        return F.linear(x, w, b)

    # -- math ------------------------------------------------------------------------------------------------
    def _rms(self, x, w):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * w).to(self.dtype)

    def _rope_table(self, n: int):
        if self._cos is None or self._cos.shape[0] < n:
            n = max(n, 2048)
            t = torch.arange(n, dtype=torch.float32)
            fr = torch.outer(t, self.inv_freq)
            emb = torch.cat([fr, fr], -1)
            self._cos = (emb.cos() * self.rope_scale).to(self.device)
            sin = emb.sin() * self.rope_scale
            sin[:, : sin.shape[1] // 2].neg_()  # folds rotate_half's sign in: cat(-x2, x1)·sin = roll(x)·(±sin)
            self._sin = sin.to(self.device)
            self.static.clear()  # their graphs read the old tables
        return self._cos, self._sin

    @staticmethod
    def _rotate(x, cos, sin_signed):  # x [..., hd] fp32, tables broadcastable; exactly HF's rotate_half form
        return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_signed

    def _mlp(self, x, lw):
        h = self._rms(x, lw[5])
        gu = self._linear(h, lw[6])
        i = gu.shape[-1] // 2
        # fp32 + bf16 promotes to fp32 exactly: the residual add needs no separate cast
        return x + self._linear(F.silu(gu[..., :i]) * gu[..., i:], lw[7])

    def _logits(self, x):
        """fp32 logits from the fp32 residual stream: the final norm and the output layer in fp32 (as the trainer)."""
        x = x.float()
        return F.linear(x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm, self.lm_head)

    def prefill(self, ids: list[int]):
        """Run one prompt; return (per-layer K and V [n_kv, L, hd] in the compute dtype, last-token logits)."""
        return self.prefill_many([ids])[0]

    def prefill_many(self, prompts: list[list[int]]) -> list[tuple[list, torch.Tensor]]:
        """Prefill several prompts in one pass: their tokens are stacked (no padding) so every matmul and
        elementwise op runs once over all of them; only attention runs per prompt (causal within a prompt).
        Per-op overhead, not arithmetic, dominated one-prompt prefill (measured: 61 ms for a 146-token prompt, of
        which 30 ms in matmuls). Returns (per-layer K and V [n_kv, L, hd], last-token logits) per prompt."""
        lens = [len(p) for p in prompts]
        N = sum(lens)
        spans, a = [], 0
        for L in lens:
            spans.append((a, a + L))
            a += L
        cos, sin = self._rope_table(max(lens))
        pos = torch.cat([torch.arange(L, device=self.device) for L in lens])
        cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # [N, 1, hd]
        x = self.embed[torch.tensor([t for p in prompts for t in p], device=self.device)].float()  # [N, D]
        hd, H, Hk = self.head_dim, self.n_heads, self.n_kv
        kvs: list[list] = [[] for _ in prompts]
        for lw in self.layers:
            qkv = self._linear(self._rms(x, lw[0]), lw[1], lw[2])
            qk = self._rotate(qkv[:, :(H + Hk) * hd].float().view(N, H + Hk, hd), cos, sin).to(self.dtype)
            v = qkv[:, (H + Hk) * hd:].reshape(N, Hk, hd)
            for j, (a, b) in enumerate(spans):
                kvs[j].append((qk[a:b, H:].transpose(0, 1), v[a:b].transpose(0, 1)))
            if self.batched_attention:
                o = F.scaled_dot_product_attention(
                    qk[:, :H].transpose(0, 1).unsqueeze(0), qk[:, H:].transpose(0, 1).unsqueeze(0),
                    v.transpose(0, 1).unsqueeze(0), attn_mask=_block_causal(spans, self.device),
                    enable_gqa=H != Hk)[0].transpose(0, 1)
            else:
                o = torch.empty(N, H, hd, dtype=self.dtype, device=self.device)
                for j, (a, b) in enumerate(spans):
                    q, (k, vj) = qk[a:b, :H].transpose(0, 1), kvs[j][-1]
                    o[a:b] = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), vj.unsqueeze(0),
                                                            is_causal=True, enable_gqa=H != Hk)[0].transpose(0, 1)
            x = x + self._linear(o.reshape(N, H * hd), lw[3], lw[4])
            x = self._mlp(x, lw)
        logits = self._logits(x[[b - 1 for _, b in spans]])
        return [(kvs[j], logits[j]) for j in range(len(prompts))]

    def decode(self, tok, pos, kc, vc, nb: int, tmax: int):
        """One step for rows [0, nb): tok [nb] long, pos [nb] long (where tok sits); caches [S, Hk, T, hd]."""
        cos, sin = self._rope_table(tmax)
        cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)  # [nb, 1, hd]
        hd, H, Hk = self.head_dim, self.n_heads, self.n_kv
        G = H // Hk
        rows = torch.arange(nb, device=self.device)
        mask = torch.arange(tmax, device=self.device).unsqueeze(0) > pos.unsqueeze(1)  # [nb, tmax] True = hide
        bias = torch.zeros(nb, 1, 1, tmax, dtype=torch.float32, device=self.device).masked_fill_(
            mask.view(nb, 1, 1, tmax), float("-inf"))
        scale = 1.0 / math.sqrt(hd)
        x = self.embed[tok].float()  # [nb, D]
        for li, lw in enumerate(self.layers):
            qkv = self._linear(self._rms(x, lw[0]), lw[1], lw[2])
            qk = self._rotate(qkv[:, :(H + Hk) * hd].float().view(nb, H + Hk, hd), cos, sin).to(self.dtype)
            q, k, v = qk[:, :H], qk[:, H:], qkv[:, (H + Hk) * hd:]  # q and k rotated in one pass
            K, V = kc[li], vc[li]
            K[rows, :, pos] = k
            V[rows, :, pos] = v.reshape(nb, Hk, hd)
            Kt, Vt = K[:nb, :, :tmax], V[:nb, :, :tmax]
            s = torch.matmul(q.reshape(nb, Hk, G, hd), Kt.transpose(-1, -2)).float() * scale + bias
            p = torch.softmax(s, -1).to(self.dtype)
            o = torch.matmul(p, Vt)  # [nb, Hk, G, hd]
            x = x + self._linear(o.reshape(nb, H * hd), lw[3], lw[4])
            x = self._mlp(x, lw)
        return self._logits(x)

    # -- scheduling ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, prompts: list[list[int]], params: SamplingParams, eos_ids: list[int], slots: int,
            on_done=None) -> list[list[list[int]]]:
        """Generated token ids per (prompt, sample), each cut after its first end-of-turn token; the drawn tokens'
        log-probabilities in ``self.logprobs`` (None when greedy)."""
        t0 = time.perf_counter()
        self.maybe_refresh()
        n = params.n
        out: list[list[list[int] | None]] = [[None] * n for _ in prompts]
        self.logprobs: list[list[list[float] | None]] = [[None] * n for _ in prompts]
        if not prompts:
            return out  # type: ignore[return-value]

        def finish(job):  # job = [prompt index, k, tokens, log-probabilities or None]
            out[job[0]][job[1]], self.logprobs[job[0]][job[1]] = job[2], job[3]
            if on_done:
                on_done()

        waiting = _Waiting(self, prompts, params)
        S = min(slots, len(prompts) * n)
        run = self._run_dynamic if self.decode_mode == "dynamic" else self._run_static
        steps, decode_tokens, ttft = run(prompts, params, set(eos_ids), S, waiting, finish, t0)
        wall = time.perf_counter() - t0
        self.stats = {"ttft_s": ttft, "decode_steps": steps, "decode_tokens": decode_tokens, "wall_s": wall,
                      "prefill_s": waiting.prefill_s, "decode_s": wall - waiting.prefill_s, "slots": S,
                      "decode": self.decode_mode}
        return out  # type: ignore[return-value]

    def _draw(self, logits, params: SamplingParams, keys, counters):
        """(tokens, log-probabilities or None) for rows of ``logits``: argmax when greedy, else the exact draw of
        ``sampling.sample`` with each row's (key, counter) uniform."""
        if params.temperature == 0:
            return logits.argmax(-1), None
        return sample(logits, params.temperature, params.top_p if params.top_p < 1 else None, keys, counters,
                      sort_nucleus=self.decode_mode != "dynamic")

    def _first_tokens(self, taken, params: SamplingParams):
        """First tokens of the samples ``taken`` from the queue, drawn together from their prompts' prefill
        logits (counter 0 of each sample's stream): (tokens, log-probabilities or None, keys)."""
        keys = [_sample_key(params.seed, i, k) for i, k, _, _ in taken]
        logits = torch.stack([t[3] for t in taken])
        tok, lp = self._draw(logits, params, torch.tensor(keys, device=self.device),
                             torch.zeros(len(taken), dtype=torch.long, device=self.device))
        return tok.tolist(), None if lp is None else lp.tolist(), keys

    def _run_dynamic(self, prompts, params, eos, S, waiting, finish, t0):
        """The CPU schedule: rows [0, nb) are live; a finished row is refilled at once from the queue or, when
        nothing waits, replaced by the last live row so the batch shrinks (a CPU pays for every row it computes,
        and each step attends only up to the longest live context)."""
        max_new = params.max_new_tokens
        T = max(len(p) for p in prompts) + max_new
        shape = (S, self.n_kv, T, self.head_dim)
        kc = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        vc = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        tok, pos, key, ctr = (torch.zeros(S, dtype=torch.long, device=self.device) for _ in range(4))
        slot_job: list = [None] * S
        ttft = None
        steps = decode_tokens = nb = 0

        def start(slot) -> bool:
            """Put the next waiting sample into ``slot``; False when the queue is empty."""
            nonlocal ttft
            while waiting:
                taken = waiting.take()
                (first,), lps, (k,) = self._first_tokens([taken], params)
                ttft = ttft or time.perf_counter() - t0
                job = [taken[0], taken[1], [first], None if lps is None else lps]
                if first in eos or max_new == 1:
                    finish(job)
                    continue
                L = len(prompts[taken[0]])
                for li, (kk, vv) in enumerate(taken[2]):
                    kc[li][slot, :, :L] = kk
                    vc[li][slot, :, :L] = vv
                tok[slot], pos[slot], key[slot], ctr[slot] = first, L, k, 1
                slot_job[slot] = job
                return True
            return False

        def move(src, dst):
            for li in range(len(kc)):
                kc[li][dst] = kc[li][src]
                vc[li][dst] = vc[li][src]
            for t in (tok, pos, key, ctr):
                t[dst] = t[src]
            slot_job[dst] = slot_job[src]

        while nb < S and start(nb):
            nb += 1
        while nb:
            tmax = int(pos[:nb].max()) + 1
            logits = self.decode(tok[:nb], pos[:nb], kc, vc, nb, tmax)
            nxt, nlp = self._draw(logits, params, key[:nb], ctr[:nb])
            steps += 1
            decode_tokens += nb
            tok[:nb] = nxt
            pos[:nb] += 1
            ctr[:nb] += 1
            nl = nxt.tolist()
            nlps = nlp.tolist() if nlp is not None else None
            r = 0
            while r < nb:
                job = slot_job[r]
                job[2].append(nl[r])
                if nlps is not None:
                    job[3].append(nlps[r])
                if nl[r] in eos or len(job[2]) >= max_new:
                    finish(job)
                    if not start(r):  # nothing waits: move the last active row here and shrink the batch
                        nb -= 1
                        if r != nb:
                            move(nb, r)
                            nl[r] = nl[nb]
                            if nlps is not None:
                                nlps[r] = nlps[nb]
                            continue  # examine the moved row (it has already received its token)
                r += 1
        return steps, decode_tokens, ttft

    def _run_static(self, prompts, params, eos, S, waiting, finish, t0):
        """The GPU schedule: every step decodes all S slots over the whole cache (fixed shapes, so the step can
        be one CUDA graph replay); finished slots idle until the next refill, which places every waiting sample
        that fits in one go (first tokens drawn together, KV written with two indexed copies a layer)."""
        from .static import StaticBatch
        max_new = params.max_new_tokens
        T = -(-(max(len(p) for p in prompts) + max_new) // 128) * 128  # rounded, so graphs are reused across calls
        st = StaticBatch.get(self, S, T, params)
        jobs: list = [None] * S
        free = list(range(S - 1, -1, -1))
        ttft = None
        steps = decode_tokens = 0

        def fill():
            nonlocal ttft
            while free and waiting:
                taken = [waiting.take() for _ in range(min(len(free), len(waiting)))]
                firsts, lps, keys = self._first_tokens(taken, params)
                ttft = ttft or time.perf_counter() - t0
                placed = []
                for j, (i, k, kv, _) in enumerate(taken):
                    job = [i, k, [firsts[j]], None if lps is None else [lps[j]]]
                    if firsts[j] in eos or max_new == 1:
                        finish(job)
                        continue
                    slot = free.pop()
                    jobs[slot] = job
                    placed.append((slot, kv, firsts[j], keys[j]))
                if placed:
                    st.place(placed)

        fill()
        while len(free) < S:
            vals = st.step().tolist()  # one device-to-host copy a step: [tokens, log-probabilities]
            steps += 1
            decode_tokens += S - len(free)
            for r, job in enumerate(jobs):
                if job is None:
                    continue
                t = int(vals[0][r])
                job[2].append(t)
                if job[3] is not None:
                    job[3].append(vals[1][r])
                if t in eos or len(job[2]) >= max_new:
                    finish(job)
                    jobs[r] = None
                    free.append(r)
            fill()
        return steps, decode_tokens, ttft


class _Waiting:
    """Samples waiting for a slot: longest prompt first (short ones fill in at the end), the ``n`` samples of a
    prompt adjacent. A prompt is prefilled when its first sample is taken, together with the next waiting
    prompts up to the runner's prompt and token budgets, and its KV and logits are kept until its last sample
    is taken (one prefill per conversation, shared by its samples)."""

    def __init__(self, runner: _FastLlama, prompts: list[list[int]], params: SamplingParams):
        self.runner, self.prompts = runner, prompts
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        self.queue = [(i, k) for i in order for k in range(params.n)]
        self.next = 0
        self.prefix: dict[int, tuple] = {}  # prompt index -> (kv, logits) while some of its samples still wait
        self.left = {i: params.n for i in range(len(prompts))}
        self.prefill_s = 0.0

    def __len__(self) -> int:
        return len(self.queue) - self.next

    def take(self):
        """(prompt index, k, per-layer KV, last-token logits) of the next waiting sample."""
        i, k = self.queue[self.next]
        self.next += 1
        if i not in self.prefix:
            tp = time.perf_counter()
            chunk, toks = [], 0
            for j, _ in itertools.islice(self.queue, self.next - 1, None):
                if j in self.prefix or (chunk and j == chunk[-1]):
                    continue
                if chunk and (len(chunk) >= self.runner.prefill_prompts
                              or toks + len(self.prompts[j]) > self.runner.prefill_tokens):
                    break
                chunk.append(j)
                toks += len(self.prompts[j])
            for j, r in zip(chunk, self.runner.prefill_many([self.prompts[j] for j in chunk])):
                self.prefix[j] = r
            self.prefill_s += time.perf_counter() - tp
        kv, logits = self.prefix[i]
        self.left[i] -= 1
        if self.left[i] == 0:
            del self.prefix[i]
        return i, k, kv, logits


def _sample_key(seed: int, i: int, k: int) -> int:
    """The key of sample ``k`` of conversation ``i``: its stream of uniforms is ``uniforms(key, token index)``."""
    return derive_seed(seed, i, k)


def _block_causal(spans: list[tuple[int, int]], device) -> torch.Tensor:
    """[N, N] bool mask, True = attend: causal within each span of the stacked prompts, nothing across spans."""
    N = spans[-1][1]
    seg = torch.empty(N, dtype=torch.long, device=device)
    for j, (a, b) in enumerate(spans):
        seg[a:b] = j
    idx = torch.arange(N, device=device)
    return (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])


def _copy_into(old, new) -> bool:
    """Copy every tensor of the nested tuples/lists ``new`` into its counterpart in ``old`` in place; False
    (nothing copied) when the two differ in structure, shape, dtype or device."""
    pairs = []

    def walk(a, b) -> bool:
        if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
            return len(a) == len(b) and all(walk(x, y) for x, y in zip(a, b))
        if a is None or b is None:
            return a is None and b is None
        if (a.shape, a.dtype, a.device) != (b.shape, b.dtype, b.device):
            return False
        pairs.append((a, b))
        return True

    if not walk(old, new):
        return False
    for a, b in pairs:
        if a.data_ptr() != b.data_ptr():
            a.copy_(b)
    return True


def _can_pack(dtype: torch.dtype, device) -> bool:
    """Whether oneDNN weight prepacking applies: bf16 on a CPU with native bf16."""
    return dtype == torch.bfloat16 and torch.device(device).type == "cpu" and bf16_native() \
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _pack(w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), 32)


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
