"""The shared on-policy RL loop: sample → grade → advantages → trainer step → log → checkpoint, exactly once per
step, resumable at any point.

An algorithm is a small hook (``RLAlgorithm``): how many steps and turns, and, from a step's rewards, the per-turn
loss weights (advantages) and KL coefficients. The loop owns everything else, so SCoRe and its ablations are that
hook plus their config (``methods/score.py``), and a new on-policy method is one class.

Why the loop samples through ``ctx.engine`` and trains ``ctx.trainable_model()``: with the HF engine they are one
model object (every rollout sees the latest weights); with an engine that holds its own weights (vLLM) the loop
pushes them after each step through ``ctx.sync_policy``. Either way the trainer's loss takes log-probabilities at
the sampling temperature, on exactly the token ids the engine sampled (``training/sequences.py``).
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from .. import dist
from ..device import trim_heap
from ..checks import UsageError
from ..engines.base import SamplingParams
from ..metrics import edit_distance_ratio, is_correct
from ..protocol import Episode, ProtocolConfig, run_protocol
from ..seeding import derive_seed
from .sequences import episode_to_sequences
from .checkpoint import drop_steps_after
from .trainer import Trainer
from .validation import Validator, plot_val_log


class RLAlgorithm:
    """The hook an on-policy algorithm implements."""
    turns: int = 2
    """Attempts per rollout (the protocol's K)."""
    samples_per_attempt: int = 1
    """Second attempts sampled from each first attempt (m > 1: the turn-2 baseline can be conditioned on y1)."""

    def n_steps(self) -> int:
        raise NotImplementedError

    def weights(self, step: int, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """From ``rewards`` shaped (problems, samples, turns): per-turn loss weights and KL coefficients of the same
        shape, and extra fields for this step's log line (e.g. the stage)."""
        raise NotImplementedError


def make_trainer(model, tok, tcfg, out, n_steps: int, device: str | None = None) -> Trainer:
    """The Trainer for ``n_steps`` RL steps: the loss takes log-probabilities at the temperature the rollouts
    were sampled at (on-policy), and a scheduled learning rate spans the RL steps, not ``tcfg.steps``."""
    trainer = Trainer(model, tok, tcfg, out, temperature=tcfg.temperature, device=device)
    trainer.planned_steps = n_steps
    return trainer


def rollout_dtype(engine, trainer: Trainer) -> str:
    """One precision: the engine samples rollouts in the dtype the trainer computes their log-probabilities in
    (``TrainConfig.resolved_dtype``: bf16 autocast where bf16 measures faster, else fp32), so the loss is on-policy
    in fact.
    Returns the dtype the engine now computes in."""
    return engine.use_compute_dtype(trainer.cfg.resolved_dtype(trainer.accelerator.device.type))


def rollout_stats(eps: list[Episode]) -> dict:
    """What the training curves show: reward per turn, i→c / c→i rates, edit distance between attempts."""
    r = np.array([e.rewards for e in eps], dtype=float)
    out = {"reward_t1": float(r[:, 0].mean())}
    if r.shape[1] >= 2:
        c1, c2 = is_correct(r[:, 0]), is_correct(r[:, 1])
        out.update(reward_t2=float(r[:, 1].mean()), i2c=float((~c1 & c2).mean()), c2i=float((c1 & ~c2).mean()),
                   edit_ratio=float(np.mean([edit_distance_ratio(e.attempts[0].response, e.attempts[1].response)
                                             for e in eps])))
    return out


def rl_train(ctx, algo: RLAlgorithm, tcfg, problems_per_step: int, samples_per_problem: int,
             max_new_tokens: int | None = None, rollout_log: bool = True, desc: str = "rl") -> Trainer:
    """Run ``algo`` on ``ctx.task``'s train split until ``algo.n_steps()`` optimizer steps are done (resuming from
    the latest checkpoint in RUN/train); returns the Trainer (the caller saves the policy).

    In a multi-process run every rank draws the same problems for a step, samples its own block of them (all
    ``samples_per_problem`` samples of a problem on one rank, so baselines stay within a problem), and
    ``learn_step`` makes the step the one of the whole batch."""
    from tqdm.auto import tqdm
    out = Path(ctx.run_dir.path) / "train"
    model, tok = ctx.trainable_model()
    n = algo.n_steps()
    trainer = make_trainer(model, tok, tcfg, out, n)
    train_dtype = tcfg.resolved_dtype(trainer.accelerator.device.type)
    ctx.run_dir.update_config(train_device=str(trainer.accelerator.device), train_dtype=train_dtype)
    trainer.resume()
    ctx.sync_policy(trainer.model)
    ctx.run_dir.update_config(rollout_compute_dtype=rollout_dtype(ctx.engine, trainer))
    log = out / "rollouts.jsonl"
    task, train = ctx.task, ctx.train_examples()
    max_new = max_new_tokens or task.max_new_tokens
    val = Validator(ctx, tcfg, out, n, max_new)
    if dist.is_main():
        drop_steps_after(log, trainer.step_count)
        val.drop_steps_after(trainer.step_count)
    k, P = samples_per_problem, min(problems_per_step, len(train))
    m = algo.samples_per_attempt if algo.turns >= 2 else 1
    if P < dist.world():
        raise UsageError(f"problems_per_step ({P}) must be at least the number of processes ({dist.world()}): "
                         "each process samples whole problems")
    proto = ProtocolConfig(turns=algo.turns)
    bar = tqdm(total=n, initial=trainer.step_count, desc=desc, unit="step", disable=not dist.is_main())
    val(trainer.step_count, trainer)
    while trainer.step_count < n:
        step = trainer.step_count
        t_step = time.time()
        problems = random.Random(derive_seed(tcfg.seed, "problems", step)).sample(train, P)
        params = SamplingParams(temperature=tcfg.temperature, max_new_tokens=max_new, n=k,
                                seed=derive_seed(tcfg.seed, "rollouts", step))
        mine = dist.shard(problems)
        eps = run_protocol(ctx.engine, task, mine, params, proto, samples_per_problem=k, keep_ids=True,
                           progress=False, chunk_size=len(mine), samples_per_attempt=m)
        # the trainer step's peak memory without the engine's stale weight copy (engines outside the Engine base
        # may lack the hook)
        getattr(ctx.engine, "release_weights", lambda: None)()
        trim_heap()  # what the rollouts freed, off the trainer step's peak
        stats, extra, everyone = learn_step(trainer, algo, tok, step, eps, k * m)
        trim_heap()  # and what the trainer step freed, off the next rollouts'
        ctx.sync_policy(trainer.model)
        if rollout_log and dist.is_main():
            with open(log, "a", encoding="utf-8") as f:
                for e in everyone:
                    f.write(json.dumps({"step": trainer.step_count, **extra, **e.to_json()}) + "\n")
        val.resolve_every(time.time() - t_step)
        row = val(trainer.step_count, trainer)
        if tcfg.save_every and trainer.step_count % tcfg.save_every == 0:
            trainer.save_checkpoint()
        bar.update(1)
        bar.set_postfix(**{k_: v for k_, v in extra.items() if isinstance(v, str)},
                        r1=f"{stats['reward_t1']:.2f}", r2=f"{stats.get('reward_t2', 0):.2f}",
                        **({"val_delta": f"{row['delta']:+.3f}"} if row else {}))
    bar.close()
    val(trainer.step_count, trainer)  # the end point when a resumed run had finished its steps already
    if dist.is_main() and val.enabled:
        plot_val_log(val.log, out / "val_curves.png")
    trainer.validator = val
    return trainer


def learn_step(trainer: Trainer, algo: RLAlgorithm, tok, step: int, eps: list[Episode], k: int):
    """One optimizer step of ``algo`` on this rank's episodes ``eps`` (its problems x ``k`` samples, problem-major,
    with the engine's token ids): per-turn weights from the rewards, training sequences of exactly the sampled ids,
    the trainer step. Returns (the step's stats over every rank's episodes, the algorithm's log fields, every
    rank's episodes)."""
    r = np.array([e.rewards for e in eps], dtype=float).reshape(len(eps) // k, k, -1)
    w, kl, extra = algo.weights(step, r)
    w, kl = w.reshape(len(eps), -1), kl.reshape(len(eps), -1)
    seqs = [s for e, wi, ki in zip(eps, w, kl) for s in episode_to_sequences(tok, e, list(wi), list(ki))]
    everyone = [e for part in dist.gather(eps) for e in part]
    stats = {**extra, **rollout_stats(everyone)}
    trainer.step(seqs, extra=stats)
    return stats, extra, everyone
