"""The trainer every training method shares: masked / weighted token loss plus a per-token KL to a reference.

    loss = [ sum_t -w_t * log pi(x_t | x_<t)  +  sum_t k_t * KL_t ] / denom

SFT sets w = 1 on the target response; policy gradient sets w = the advantage; SCoRe adds KL coefficients per
turn. Distribution, mixed precision and device placement are accelerate's; LoRA is peft's. Checkpoints hold the
weights in ``save_pretrained`` format plus optimizer, scheduler, RNG states and the step count, so a killed run
resumes to bit-identical weights.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import dist
from ..machine import rss_gb
from ..seeding import derive_seed
from .config import TrainConfig
from .sequences import Sequence
from .checkpoint import Checkpoints, _step_of
from .curves import plot_log
from .lean import make_lean
from .memory import after_micro_batch, before_optimizer_step, flat_grads
from .prompts import SharedPrompts
from .token_loss import SelectedLogits, fused_token_loss, release_workspace


class Trainer(Checkpoints):
    def __init__(self, model, tokenizer, cfg: TrainConfig, out_dir: str | Path, ref_model=None,
                 temperature: float = 1.0, device: str | None = None):
        """``ref_model``: None = the adapter-disabled model with LoRA, else a frozen copy of ``model`` taken now;
        a model = that model; False = no reference (SFT; KL terms then raise).

        ``temperature``: the temperature the training tokens were sampled at. A policy gradient is the gradient
        of log pi_T(y), the distribution the sampler drew y from, so the loss and the KL divide logits by it; SFT
        on data keeps 1.0 (maximum likelihood of the model itself).

        ``device``: "cpu" or "cuda" (``scorebench.device.resolve``); None = the device the model is on, so a
        trainer never moves a policy away from the engine that samples it."""
        if temperature <= 0:
            raise ValueError("Trainer temperature must be > 0 (a greedy sampler has no log-probabilities), "
                             f"got {temperature}")
        self.temperature = float(temperature)
        self.fused = True  # fused, chunked output-layer loss where the model allows (``token_loss``)
        from accelerate import Accelerator
        self.cfg, self.tokenizer = cfg, tokenizer
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out_dir / "train_log.jsonl"
        self.step_count = 0
        self.planned_steps = cfg.steps
        torch.manual_seed(cfg.seed)
        device = device or next(model.parameters()).device.type
        mp = "bf16" if cfg.resolved_dtype(device) == "bfloat16" else "no"
        cpu = device == "cpu"
        try:
            self.accelerator = Accelerator(mixed_precision=mp, cpu=cpu)
        except ValueError:
            # accelerate's state is process-wide; another Trainer here may ask for another precision: reset, retry
            from accelerate.state import AcceleratorState
            AcceleratorState._reset_state(reset_partial_state=False)
            self.accelerator = Accelerator(mixed_precision=mp, cpu=cpu)
        from accelerate.utils import DistributedType
        if self.accelerator.distributed_type == DistributedType.FSDP:
            # The HF engine samples the very model object trained here; FSDP would shard it under the sampler.
            raise ValueError("FSDP is not supported by scorebench's trainer yet (the engine samples the trained "
                             "model, which FSDP shards); launch with data parallelism (the default of accelerate "
                             "launch --num_processes N)")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model.float()  # master weights in float32; bf16 runs under autocast
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if cfg.lora:
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM"))
            if cfg.gradient_checkpointing:
                model.enable_input_require_grads()
            self.ref_model = ref_model if ref_model not in (None, False) else None
        elif ref_model is None:
            self.ref_model = copy.deepcopy(model)
            if mp == "bf16":
                store_linears_in(self.ref_model, torch.bfloat16)
        else:
            self.ref_model = ref_model or None
        self._ref_is_adapter_off = cfg.lora and ref_model is None
        if self.ref_model is not None:
            self.ref_model.eval().requires_grad_(False)
        if cfg.lean_activations:  # after the reference's copy: only the trained model's backward needs it
            make_lean(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        model.train()
        self._policy = SelectedLogits(model)
        self._model, self.optimizer, self.scheduler = self.accelerator.prepare(self._policy, opt, sched)
        self._ref = None
        if self.ref_model is not None:
            self.ref_model.to(self.accelerator.device)
            self._ref = SelectedLogits(self.ref_model)

    # ---------------------------------------------------------------- model access
    @property
    def model(self):
        """The unwrapped trainable model (a PeftModel with LoRA); HFEngine can sample from it directly."""
        return self._policy.model

    def _lr_factor(self, step: int) -> float:
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            span = max(1, self.planned_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
        return 1.0

    # ---------------------------------------------------------------- loss
    def _collate(self, batch: list[Sequence], starts: list[int] | None = None):
        """(ids, mask, w, k) right-padded; ``starts``: each sequence from that position on (its shared prompt's
        past supplies the rest)."""
        starts = starts or [0] * len(batch)
        width = max(len(s.input_ids) - a for s, a in zip(batch, starts))
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        w = torch.zeros((len(batch), width))
        k = torch.zeros((len(batch), width))
        for r, (s, a) in enumerate(zip(batch, starts)):  # right padding; the mask is by position, never by id
            n = len(s.input_ids) - a
            ids[r, :n] = torch.tensor(s.input_ids[a:])
            mask[r, :n] = 1
            w[r, :n] = torch.tensor(s.weights[a:], dtype=torch.float32)
            k[r, :n] = torch.tensor(s.kl_weights[a:], dtype=torch.float32)
        dev = self.accelerator.device
        return ids.to(dev), mask.to(dev), w[:, 1:].to(dev), k[:, 1:].to(dev)

    def denominator(self, batch: list[Sequence]) -> float:
        """"sequences": the number of episodes (pieces of one episode share ``group``); "tokens": positions
        that carry a loss weight or a KL coefficient. In a multi-process run, of the whole step (every rank's
        share), so the ranks' averaged gradients are the gradient of the whole batch."""
        return float(max(1, dist.all_sum([self._count(batch)])[0]))

    def _count(self, batch: list[Sequence]) -> int:
        if self.cfg.loss_normalization == "sequences":
            return len({s.group if s.group is not None else id(s) for s in batch})
        return sum(sum(1 for w, k in zip(s.weights[1:], s.kl_weights[1:]) if w != 0 or k != 0) for s in batch)

    def _logits_at(self, module: SelectedLogits, ids, mask, rows, cols, hidden: bool = False, past=None):
        """fp32 logits, divided by the sampling temperature, of the distributions at positions (rows, cols)
        (``hidden``: the decoder's hidden states there, as computed). ``module``: the prepared policy when
        gradients flow (its wrapper syncs them), else an unwrapped one. ``past``: shared prompts' past."""
        with self.accelerator.autocast():
            out = module(ids, mask, rows, cols, hidden=hidden, past=past)
        return out if hidden else out.float() / self.temperature

    def _reference(self):
        """(module, context) of the reference's forward: the adapter-disabled policy with LoRA."""
        if self._ref_is_adapter_off:
            return self._policy, self.model.disable_adapter()
        if self._ref is None:
            raise ValueError("a KL term needs a reference model (the Trainer was built with ref_model=False)")
        return self._ref, contextlib.nullcontext()

    def _ref_logits_at(self, ids, mask, rows, cols, hidden: bool = False, past=None):
        """The reference's logits at (rows, cols) (``hidden``: its hidden states there), without gradients."""
        module, ctx = self._reference()
        with torch.no_grad(), ctx:
            return self._logits_at(module, ids, mask, rows, cols, hidden, past)

    def _prompt_kv(self, which: str, ids, mask, grad: bool = False):
        """Per layer (keys, values) of prompts under the policy or the reference (``SharedPrompts``' forward)."""
        module, ctx = self._reference() if which == "reference" else (self._policy, contextlib.nullcontext())
        with torch.set_grad_enabled(grad), ctx, self.accelerator.autocast():
            return module.prompt_kv(ids, mask)

    def shared_prompts(self, batch: list[Sequence]) -> SharedPrompts | None:
        """The step's shared prompts (``prompts.py``), or None where they do not apply or none is shared."""
        if (not self.cfg.share_prompts or dist.world() > 1 or len(batch) < 2
                or not self._policy.can_share_prompts()):
            return None
        shared = SharedPrompts(batch, self._prompt_kv, self.pad_id, self.accelerator.device,
                               reference=self._needs_reference(batch))
        return shared if shared.prompts else None

    def _needs_reference(self, batch: list[Sequence]) -> bool:
        return any(any(k != 0 for k in s.kl_weights) for s in batch)

    def kl_terms(self, logits, ref_logits, targets):
        """Per-token KL(pi || ref) of rows of logits with the configured estimator (see KL_ESTIMATORS for why
        only these two)."""
        if self.cfg.kl_estimator == "full":
            logp, logq = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
            return (logp.exp() * (logp - logq)).sum(-1)
        logp_t = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        logq_t = ref_logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(ref_logits, -1)
        return 0.5 * (logp_t - logq_t) ** 2  # k2

    def token_logprobs(self, batch: list[Sequence]) -> list[list[float]]:
        """log pi_T(input_ids[t] | prefix) at every position with a loss weight or KL coefficient, per sequence,
        as the loss sees them (temperature included): what a test compares with the sampler's probabilities."""
        ids, mask, w, k = self._collate(batch)
        rows, cols = ((w != 0) | (k != 0)).nonzero(as_tuple=True)
        with torch.no_grad():
            logits = self._logits_at(self._policy, ids, mask, rows, cols)
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:][rows, cols][:, None]).squeeze(-1)
        out: list[list[float]] = [[] for _ in batch]
        for r, v in zip(rows.tolist(), lp.tolist()):
            out[r].append(v)
        return out

    def loss(self, batch: list[Sequence], denom: float | None = None, shared: SharedPrompts | None = None):
        """(loss tensor, stats) for ``batch`` in one forward pass; ``denom`` defaults to this batch's own. The
        output layer's part is fused and chunked (``token_loss``) where the model allows, else autograd's.
        ``shared``: the step's shared prompts (the sequences then run from where their prompt ends)."""
        denom = self.denominator(batch) if denom is None else denom
        starts = [shared.start(s) for s in batch] if shared else None
        ids, mask, w, k = self._collate(batch, starts)
        past = shared.past(batch) if shared else None
        ref_past = shared.past(batch, reference=True) if shared and shared.ref is not None else None
        rows, cols = ((w != 0) | (k != 0)).nonzero(as_tuple=True)
        targets = ids[:, 1:][rows, cols]
        ws, ks = w[rows, cols], k[rows, cols]
        sel = ks != 0
        kl_count = int(sel.sum())
        ref_head = self._ref_head_weight() if self.fused and kl_count else None
        if self.fused and self._policy.fusable() and (not kl_count or ref_head is not None):
            h_ref = self._ref_logits_at(ids, mask, rows[sel], cols[sel], True, ref_past) if kl_count else None

            def fused(h, head_w):
                return fused_token_loss(h, head_w, targets, ws, ks, h_ref, ref_head, self.temperature,
                                        self.cfg.kl_estimator)
            with self.accelerator.autocast():
                total, pg, kl_sum, kl_term = self._model(ids, mask, rows, cols, loss=fused, past=past)
        else:
            logits = self._logits_at(self._model, ids, mask, rows, cols, past=past)
            pg = -(ws * -F.cross_entropy(logits, targets, reduction="none")).sum()
            kl_sum = kl_term = torch.zeros((), device=logits.device)
            if kl_count:
                ref = self._ref_logits_at(ids, mask, rows[sel], cols[sel], past=ref_past)
                kl = self.kl_terms(logits[sel], ref, targets[sel])
                kl_term = (ks[sel] * kl).sum()
                kl_sum = kl.detach().sum()
            total = pg + kl_term
        loss = total / denom
        stats = {"loss": float(loss.detach()), "pg": float(pg.detach()) / denom, "kl_term": float(kl_term.detach()) / denom,
                 "kl": float(kl_sum) / kl_count if kl_count else 0.0, "kl_sum": float(kl_sum), "kl_count": kl_count,
                 "tokens": int(rows.numel()), "total_tokens": sum(len(s.input_ids) for s in batch)}
        return loss, stats

    def _ref_head_weight(self):
        """The reference's output weight when its output layer can be fused, else None."""
        ref = self._policy if self._ref_is_adapter_off else self._ref
        return ref.split()[1].weight if ref is not None and ref.fusable() else None

    def micro_batches(self, batch: list[Sequence], shared: SharedPrompts | None = None) -> list[list[Sequence]]:
        """Length-sorted micro-batches (little padding) of at most ``micro`` sequences, or, with
        ``micro_batch_tokens``, of at most that many padded tokens (sized for the device, not a count), longest
        first. With ``shared`` prompts, the length a sequence runs is what follows its prompt.

        Why longest first: each micro-batch's activations are freed before the next one's, and on a CPU glibc's
        heap reuses those holes only for tensors that fit in them. Shortest first, every micro-batch needed a bit
        more than the last had freed and the heap grew through the whole step (a 16 x 4 SCoRe step: 2.3 GB freed
        but kept by the end); longest first, the first micro-batch sets the heap and the rest fit in it."""
        def length(s):
            return len(s.input_ids) - (shared.start(s) if shared else 0)
        order = sorted(batch, key=length, reverse=True)
        cap = self.cfg.micro_batch_tokens
        if not cap:
            m = self.cfg.micro
            return [order[i:i + m] for i in range(0, len(order), m)]
        out: list[list[Sequence]] = [[]]
        for s in order:  # sorted descending, so a micro-batch's first sequence sets its padded width
            if out[-1] and (len(out[-1]) + 1) * length(out[-1][0]) > cap:
                out.append([])
            out[-1].append(s)
        return out

    # ---------------------------------------------------------------- optimisation
    def step(self, batch: list[Sequence], extra: dict | None = None) -> dict:
        """One optimizer step on ``batch`` (micro-batched, gradients accumulated, clipped); logs a JSONL line.

        In a multi-process run ``batch`` is this rank's share of the step (``dist.shard``): the loss is divided by
        the whole step's denominator and scaled by the number of ranks, accelerate averages the gradients, so
        every rank takes the step a single process would take on the whole batch. A rank with no sequences still
        runs one zero-weight forward and backward, so the gradient all-reduce never waits for it."""
        t0, n_proc = time.time(), dist.world()
        self._model.train()
        denom = self.denominator(batch)
        shared = self.shared_prompts(batch)
        chunks = self.micro_batches(batch, shared)
        if not chunks and n_proc > 1:
            chunks = [[Sequence([self.pad_id, self.pad_id], [0.0, 0.0], [0.0, 0.0])]]
        agg = {"loss": 0.0, "pg": 0.0, "kl_term": 0.0, "kl_sum": 0.0, "kl_count": 0, "tokens": 0, "total_tokens": 0}
        self.optimizer.zero_grad(set_to_none=True)
        if n_proc == 1:  # gradients and moments in one block each (``memory.py``); multi-process: DDP's buckets
            flat_grads(self.params)
        for j, mb in enumerate(chunks):
            sync = contextlib.nullcontext() if j == len(chunks) - 1 else self.accelerator.no_sync(self._model)
            with sync:
                loss, st = self.loss(mb, denom=denom, shared=shared)
                self.accelerator.backward(loss * n_proc)
            after_micro_batch(j)
            for key in agg:
                agg[key] += st[key] if batch else 0
        if shared is not None:  # single-process only (``shared_prompts``): no gradient sync to come after
            shared.backward()
        agg["sequences"] = len(batch)
        if n_proc > 1:  # the log shows the whole step
            agg = dict(zip(agg, dist.all_sum(list(agg.values()))))
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm and self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self.params, max_norm)
        lr = self.scheduler.get_last_lr()[0]
        before_optimizer_step(self.params, getattr(self.optimizer, "optimizer", self.optimizer))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        release_workspace()  # the output layer's buffers are the trainer's alone: not held while rollouts run
        self.step_count += 1
        dt = time.time() - t0
        stats = {"step": self.step_count, "loss": agg["loss"], "pg": agg["pg"], "kl_term": agg["kl_term"],
                 "kl": agg["kl_sum"] / agg["kl_count"] if agg["kl_count"] else 0.0,
                 "grad_norm": float(grad_norm), "lr": lr, "sequences": int(agg["sequences"]),
                 "tokens": int(agg["tokens"]), "total_tokens": int(agg["total_tokens"]),
                 "tokens_per_s": agg["total_tokens"] / max(dt, 1e-9),
                 "step_time": dt, "rss_gb": rss_gb(), "peak_rss_gb": rss_gb(peak=True), **(extra or {})}
        if self.accelerator.is_main_process and (self.step_count % max(1, self.cfg.log_every) == 0):
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(stats, default=float) + "\n")
        return stats

    def _order(self, n: int, epoch: int) -> list[int]:
        order = list(range(n))
        random.Random(derive_seed(self.cfg.seed, "epoch", epoch)).shuffle(order)
        return order

    def fit(self, sequences: list[Sequence], steps: int | None = None, desc: str = "sft",
            validate=None) -> dict | None:
        """SFT-style training over ``sequences`` for min(steps, epochs) optimizer steps of ``cfg.batch_size``
        sequences, resuming from the latest checkpoint in ``out_dir``; checkpoints every ``save_every`` and at the
        end. Data order depends only on (seed, epoch), so a resumed run sees the same batches. ``validate(step)``,
        if given, is called before the first step and after every epoch (and the last step)."""
        from tqdm.auto import tqdm
        if not sequences:
            raise ValueError("fit: no training sequences")
        n_proc = dist.world()
        bs = self.cfg.batch_size
        per_epoch = math.ceil(len(sequences) / bs)
        total = min(steps if steps is not None else self.cfg.steps, max(1, math.ceil(self.cfg.epochs * per_epoch)))
        self.planned_steps = total
        self.resume()
        bar = tqdm(total=total, initial=min(self.step_count, total), desc=desc, unit="step",
                   disable=not dist.is_main())
        stats = None
        if validate and self.step_count == 0:
            validate(0)
        while self.step_count < total:
            epoch, pos = divmod(self.step_count, per_epoch)
            order = self._order(len(sequences), epoch)
            batch = [sequences[j] for j in order[pos * bs:(pos + 1) * bs]]
            if n_proc > 1:  # every rank draws the same batch and trains on its share of the episodes
                batch = dist.shard_groups(batch)
            stats = self.step(batch, extra={"epoch": epoch + pos / per_epoch})
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{stats['tokens_per_s']:.0f}")
            if validate and (self.step_count % per_epoch == 0 or self.step_count == total):
                validate(self.step_count)
            if self.cfg.save_every and self.step_count % self.cfg.save_every == 0 and self.step_count < total:
                self.save_checkpoint()
        bar.close()
        if self.latest_checkpoint() is None or _step_of(self.latest_checkpoint()) != self.step_count:
            self.save_checkpoint()
        return stats

    def plot(self, out_png: str | Path) -> Path | None:
        """Curves of loss, KL, gradient norm, learning rate and throughput from train_log.jsonl."""
        if not self.log_path.exists():
            return None
        return plot_log(self.log_path, out_png)


def store_linears_in(model, dtype: torch.dtype) -> None:
    """Keep a frozen model's linear weights in ``dtype``, the autocast dtype: autocast would cast them to it at
    every forward anyway, so the results are the same bit for bit, while the copy costs half the memory and no
    cast per micro-batch. Embeddings, norms and the output layer (tied to the embeddings, computed in fp32)
    keep their precision."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    shared = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for mod in model.modules():
        if type(mod) is torch.nn.Linear and mod is not head and mod.weight.data_ptr() not in shared:
            mod.weight.data = mod.weight.data.to(dtype)
            if mod.bias is not None:
                mod.bias.data = mod.bias.data.to(dtype)
