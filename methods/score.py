"""SCoRe (Kumar et al. 2024): two-stage, on-policy, multi-turn REINFORCE with per-turn KL and reward shaping.

Each step samples ``problems_per_step`` train problems, ``samples_per_problem`` two-turn rollouts of each from the
*current* policy (the shared protocol, at the preset's temperature — the loss uses the same one), grades both attempts with the task's reward, turns the
rewards into per-turn advantages, and takes one step of the shared Trainer on the sampled tokens:

    Stage I   turn 1: weight 0,          KL coefficient beta2 (strong: keep y1 near the base model)
              turn 2: A(r2),             KL coefficient beta1
    Stage II  turn 1: A(r1),             KL coefficient beta1
              turn 2: A(r2 + alpha·(r2 − r1)), KL coefficient beta1

Why per-token KL on turn 1 in Stage I: the point of Stage I is that the first attempt stays where the base model
puts it while the second learns to correct it. Folding turn 1's KL into one scalar reward that multiplies
log pi(y2) (a known mistake in open reimplementations) leaves y1's own log-probabilities without any gradient
toward the reference, so turn 1 drifts freely.

Why per-turn credit, not reward-to-go: with reward-to-go, turn 1 would be credited r1 + r2 + alpha·(r2 − r1),
i.e. (1 − alpha)·r1 + …, so alpha = 10 would *reward a wrong first attempt*. The paper's objective shapes the
turn-2 reward to reward the *change*; turn 1 is credited with its own reward (as in the issue and the paper's
Stage II sum of per-turn rewards).

Why no PPO clip: the paper uses REINFORCE (Ahmadian et al. 2024): one gradient step per fresh batch is exactly
on-policy, so there is no importance ratio to clip.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np

from scorebench.engines import SamplingParams
from scorebench.method import Method
from scorebench.metrics import edit_distance_ratio, is_correct
from scorebench.protocol import Episode, ProtocolConfig, run_protocol
from scorebench.seeding import derive_seed


@dataclass
class ScoreConfig:
    stages: str = "I,II"
    """Stage schedule, e.g. "I,II" or "I,II,I,II"."""
    stage1_steps: int = 10
    """Optimizer steps in each Stage I block."""
    stage2_steps: int = 20
    """Optimizer steps in each Stage II block."""
    problems_per_step: int = 8
    """Train problems per step (the batch is problems_per_step × samples_per_problem episodes)."""
    samples_per_problem: int = 4
    """Rollouts per problem; >= 2 makes the leave-one-out baseline available."""
    baseline: str = "rloo"
    """Advantage baseline: "rloo" (leave-one-out mean of the problem's other samples), "mean" (batch mean), "none"."""
    max_new_tokens: int | None = None
    """Tokens per attempt in rollouts; None = the task's default."""
    multi_turn: bool = True
    """False = the single-turn RL ablation: roll out and train turn 1 only (evaluated with two turns)."""
    stage2_algo: str = "reinforce"
    """"reinforce", or "star": Stage II replaced by STaR-style SFT on the on-policy traces whose last attempt is
    correct (each correct attempt's tokens weight 1)."""
    rollout_log: bool = True
    """Append every rollout episode (with step and stage) to RUN/train/rollouts.jsonl."""

    def __post_init__(self):
        if self.baseline not in ("rloo", "mean", "none"):
            raise ValueError(f"baseline must be rloo, mean or none, got {self.baseline!r}")
        if self.stage2_algo not in ("reinforce", "star"):
            raise ValueError(f"stage2_algo must be reinforce or star, got {self.stage2_algo!r}")
        if self.baseline == "rloo" and self.samples_per_problem < 2:
            raise ValueError("baseline 'rloo' needs samples_per_problem >= 2")
        for s in self.schedule_names():
            if s not in ("I", "II"):
                raise ValueError(f"stages must list I and II, got {self.stages!r}")

    def schedule_names(self) -> list[str]:
        return [s.strip() for s in self.stages.split(",") if s.strip()]

    def schedule(self) -> list[str]:
        """The stage of every optimizer step, in order."""
        out: list[str] = []
        for s in self.schedule_names():
            out += [s] * (self.stage1_steps if s == "I" else self.stage2_steps)
        return out


def baseline_values(returns: np.ndarray, kind: str) -> np.ndarray:
    """Baselines for ``returns`` shaped (problems, samples). RLOO: b_ij = mean of returns of the problem's other
    samples (Ahmadian et al. 2024), which keeps the gradient unbiased since b_ij does not depend on sample j."""
    if kind == "none":
        return np.zeros_like(returns)
    if kind == "mean":
        return np.full_like(returns, returns.mean())
    k = returns.shape[1]
    return (returns.sum(axis=1, keepdims=True) - returns) / (k - 1)


def turn_weights(r1: np.ndarray, r2: np.ndarray | None, stage: str, alpha: float, beta1: float, beta2: float,
                 baseline: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode (loss weight, KL coefficient) per turn, each shaped (problems, samples, turns).

    ``r2`` None = single-turn training (one turn). The loss weight is the advantage (the Trainer minimizes
    −w·log pi, so a positive advantage raises the attempt's probability).
    """
    if r2 is None:
        a1 = r1 - baseline_values(r1, baseline)
        return a1[..., None], np.full_like(a1, beta1)[..., None]
    if stage == "I":
        a2 = r2 - baseline_values(r2, baseline)
        w = np.stack([np.zeros_like(a2), a2], axis=-1)
        k = np.stack([np.full_like(a2, beta2), np.full_like(a2, beta1)], axis=-1)
        return w, k
    shaped = r2 + alpha * (r2 - r1)
    a1 = r1 - baseline_values(r1, baseline)
    a2 = shaped - baseline_values(shaped, baseline)
    return np.stack([a1, a2], axis=-1), np.full(a1.shape + (2,), beta1)


def star_weights(r1: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """STaR-style Stage II: SFT on correct attempts of traces that end correct; no KL."""
    keep = is_correct(r2).astype(float)
    w = np.stack([keep * is_correct(r1), keep], axis=-1)
    return w, np.zeros_like(w)


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


class Score(Method):
    description = "SCoRe: Stage I (turn-2 RL, turn 1 held to the base by KL) then Stage II (both turns, shaped)"
    trains = True
    config_cls = ScoreConfig
    overrides: dict = {}
    """Fixed ScoreConfig or TrainConfig values that define an ablation (they win over presets and arguments)."""

    def method_config(self, ctx):
        from scorebench.training import resolve_method_config
        mcfg, tcfg = resolve_method_config(ctx, ScoreConfig, sections=["score", self.name])
        for k, v in self.overrides.items():
            setattr(mcfg if hasattr(mcfg, k) else tcfg, k, v)
        mcfg.__post_init__()
        tcfg.loss_normalization = "sequences"  # REINFORCE: sum of token log-probs per episode, mean over episodes
        return mcfg, tcfg

    @staticmethod
    def make_trainer(model, tok, tcfg, out, n_steps: int, device: str | None = None):
        """The Trainer for ``n_steps`` RL steps: the loss takes log-probabilities at the temperature the rollouts
        were sampled at (on-policy), and a scheduled learning rate spans the stage schedule, not ``tcfg.steps``."""
        from scorebench.training import Trainer
        trainer = Trainer(model, tok, tcfg, out, temperature=tcfg.temperature, device=device)
        trainer.planned_steps = n_steps
        return trainer

    def train(self, ctx):
        from scorebench import models
        from scorebench.engines import get_engine
        from scorebench.training import episode_to_sequences
        mcfg, tcfg = self.method_config(ctx)
        out = ctx.run_dir.path / "train"
        ctx.run_dir.update_config(method_config=mcfg.__dict__, train_config=tcfg.to_dict())
        from scorebench.device import resolve
        device = resolve(getattr(ctx.config, "device", "auto"))
        model, tok = models.load(ctx.config.model, device=device)
        schedule = mcfg.schedule()
        trainer = self.make_trainer(model, tok, tcfg, out, len(schedule), device)
        ctx.run_dir.update_config(train_device=str(trainer.accelerator.device),
                                  train_dtype=tcfg.resolved_dtype(trainer.accelerator.device.type))
        trainer.resume()
        _drop_rollouts_after(out / "rollouts.jsonl", trainer.step_count)
        engine = get_engine("hf", model=trainer.model, tokenizer=tok, batch_size=ctx.config.batch_size,
                            dtype=ctx.config.dtype, compute_dtype=getattr(ctx.config, "compute_dtype", "auto"))
        task, train = ctx.task, ctx.task.train()
        k, P = mcfg.samples_per_problem, mcfg.problems_per_step
        proto = ProtocolConfig(turns=2 if mcfg.multi_turn else 1)
        max_new = mcfg.max_new_tokens or task.max_new_tokens
        from tqdm.auto import tqdm
        bar = tqdm(total=len(schedule), initial=trainer.step_count, desc=f"{self.name}", unit="step")
        while trainer.step_count < len(schedule):
            step = trainer.step_count
            stage = schedule[step]
            problems = random.Random(derive_seed(tcfg.seed, "problems", step)).sample(train, min(P, len(train)))
            params = SamplingParams(temperature=tcfg.temperature, max_new_tokens=max_new, n=k,
                                    seed=derive_seed(tcfg.seed, "rollouts", step))
            eps = run_protocol(engine, task, problems, params, proto, samples_per_problem=k, keep_ids=True,
                               progress=False, chunk_size=len(problems))
            r = np.array([e.rewards for e in eps], dtype=float).reshape(len(problems), k, -1)
            r1, r2 = r[..., 0], (r[..., 1] if mcfg.multi_turn else None)
            if stage == "II" and mcfg.stage2_algo == "star" and r2 is not None:
                w, kl = star_weights(r1, r2)
            else:
                w, kl = turn_weights(r1, r2, stage, tcfg.alpha, tcfg.beta1, tcfg.beta2, mcfg.baseline)
            w, kl = w.reshape(len(eps), -1), kl.reshape(len(eps), -1)
            seqs = [s for e, wi, ki in zip(eps, w, kl) for s in episode_to_sequences(tok, e, list(wi), list(ki))]
            stats = {"stage": stage, **rollout_stats(eps)}
            trainer.step(seqs, extra=stats)
            refresh = getattr(engine, "refresh", None)
            if refresh:
                refresh()
            if mcfg.rollout_log:
                with open(out / "rollouts.jsonl", "a", encoding="utf-8") as f:
                    for e in eps:
                        f.write(json.dumps({"step": trainer.step_count, "stage": stage, **e.to_json()}) + "\n")
            if tcfg.save_every and trainer.step_count % tcfg.save_every == 0:
                trainer.save_checkpoint()
            bar.update(1)
            bar.set_postfix(stage=stage, r1=f"{stats['reward_t1']:.2f}", r2=f"{stats.get('reward_t2', 0):.2f}")
        bar.close()
        from scorebench.plots import training_curves
        training_curves([ctx.run_dir.path], out / "curves", [self.name], smooth=3)
        return trainer.save_policy(ctx.run_dir.path / "policy")


def _drop_rollouts_after(path, step: int) -> None:
    """After a resume from a checkpoint at ``step``, forget the rollouts of the steps that will be redone, so
    rollouts.jsonl holds every step exactly once."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [x for x in lines if x.strip() and json.loads(x).get("step", 0) <= step]
    if len(keep) != len(lines):
        from scorebench.rundir import atomic_write
        atomic_write(path, "".join(keep))


class ScoreNoStage1(Score):
    description = "SCoRe ablation: w/o Stage I (Stage II only)"
    overrides = {"stages": "II"}


class ScoreNoShaping(Score):
    description = "SCoRe ablation: w/o reward shaping (alpha = 0)"
    overrides = {"alpha": 0.0}


class ScoreSingleTurn(Score):
    description = "SCoRe ablation: w/o multi-turn training (RL on turn 1 only; evaluated with two turns)"
    overrides = {"multi_turn": False, "stages": "II"}


class ScoreStarStage2(Score):
    description = "SCoRe ablation: Stage II replaced by STaR-style filtered SFT on on-policy traces"
    overrides = {"stage2_algo": "star"}
