"""SCoRe (Kumar et al. 2024): two-stage, on-policy, multi-turn REINFORCE with per-turn KL and reward shaping.

SCoRe is a hook (``ScoreAlgorithm``) on the shared on-policy loop (``scorebench/training/rl.py``): each step samples
``problems_per_step`` train problems, ``samples_per_problem`` two-turn rollouts of each from the *current* policy
(the shared protocol, at the preset's temperature — the loss uses the same one), grades both attempts with the
task's reward; the hook turns the rewards into per-turn advantages and KL coefficients, and the loop takes one step
of the shared Trainer on the sampled tokens:

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

from dataclasses import dataclass

import numpy as np

from scorebench import dist
from scorebench.api import Method
from scorebench.metrics import is_correct
from scorebench.training.advantages import BASELINES, TURN2_CREDITS, baseline_values, turn2_credit
from scorebench.plots import training_curves
from scorebench.training.config import check_bool, check_number, resolve_method_config
from scorebench.training.rl import RLAlgorithm, rl_train
from scorebench.training.validation import validation_points


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
    alpha: float = 10.0
    """Reward-shaping multiplier alpha on the turn-2 bonus r2 - r1 in Stage II (paper: 10)."""
    beta1: float = 0.01
    """KL coefficient toward the reference policy (Stage II both turns, Stage I turn 2; paper: 0.01)."""
    beta2: float = 0.1
    """Stage I KL coefficient on turn 1, keeping the first attempt near the base model (paper: 0.1)."""
    turn2_credit: str = "paper"
    """Turn 2's advantage: "paper" (the shaped reward r2 + alpha·(r2 − r1) minus its baseline), "unbiased" (the
    same without the part that depends on the first attempt only, (1 + alpha)·(r2 − b(r2)): same expected gradient,
    less noise), or "per_attempt" (``samples_per_attempt`` second attempts of each first attempt, leave-one-out
    among them: a baseline conditioned on y1, where the r1 term cancels exactly)."""
    samples_per_attempt: int = 1
    """Second attempts per first attempt (>= 2 with turn2_credit "per_attempt"; the batch is then
    problems_per_step × samples_per_problem × samples_per_attempt episodes)."""

    def __post_init__(self):
        for name in ("stage1_steps", "stage2_steps"):
            check_number(name, getattr(self, name), integer=True, ge=0)
        for name in ("problems_per_step", "samples_per_problem", "samples_per_attempt"):
            check_number(name, getattr(self, name), integer=True, ge=1)
        for name in ("alpha", "beta1", "beta2"):
            check_number(name, getattr(self, name), ge=0)
        check_number("max_new_tokens", self.max_new_tokens, integer=True, ge=1, optional=True)
        check_bool("multi_turn", self.multi_turn)
        check_bool("rollout_log", self.rollout_log)
        if self.turn2_credit not in TURN2_CREDITS:
            raise ValueError(f"turn2_credit must be one of {', '.join(TURN2_CREDITS)}, got {self.turn2_credit!r}")
        if (self.turn2_credit == "per_attempt") != (self.samples_per_attempt > 1):
            raise ValueError("turn2_credit 'per_attempt' needs samples_per_attempt >= 2, and samples_per_attempt > 1 "
                             "is only for 'per_attempt'")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be rloo, mean or none, got {self.baseline!r}")
        if self.stage2_algo not in ("reinforce", "star"):
            raise ValueError(f"stage2_algo must be reinforce or star, got {self.stage2_algo!r}")
        if self.baseline == "rloo" and self.samples_per_problem < 2:
            raise ValueError("baseline 'rloo' needs samples_per_problem >= 2")
        for s in self.schedule_names():
            if s not in ("I", "II"):
                raise ValueError(f"stages must list I and II, got {self.stages!r}")
        if not self.schedule():
            raise ValueError(f"the schedule {self.stages!r} with stage1_steps={self.stage1_steps}, stage2_steps="
                             f"{self.stage2_steps} has no optimizer step")

    def schedule_names(self) -> list[str]:
        return [s.strip() for s in self.stages.split(",") if s.strip()]

    def schedule(self) -> list[str]:
        """The stage of every optimizer step, in order."""
        out: list[str] = []
        for s in self.schedule_names():
            out += [s] * (self.stage1_steps if s == "I" else self.stage2_steps)
        return out


def turn_weights(r1: np.ndarray, r2: np.ndarray | None, stage: str, alpha: float, beta1: float, beta2: float,
                 baseline: str, credit: str = "paper", m: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode (loss weight, KL coefficient) per turn, each shaped (problems, samples, turns).

    ``r2`` None = single-turn training (one turn). The loss weight is the advantage (the Trainer minimizes
    −w·log pi, so a positive advantage raises the attempt's probability). ``credit`` is turn 2's (ScoreConfig
    .turn2_credit); with "per_attempt" the samples axis is k first attempts × ``m`` continuations of each.
    """
    if r2 is None:
        a1 = r1 - baseline_values(r1, baseline)
        return a1[..., None], np.full_like(a1, beta1)[..., None]
    # Stage I has no shaping (turn 2's reward is r2; "paper" and "unbiased" agree there); the estimators are
    # training/advantages.py's
    a1, a2 = turn2_credit(credit, r1, r2, 0.0 if stage == "I" else alpha, baseline, m)
    if stage == "I":
        w = np.stack([np.zeros_like(a2), a2], axis=-1)
        k = np.stack([np.full_like(a2, beta2), np.full_like(a2, beta1)], axis=-1)
        return w, k
    return np.stack([a1, a2], axis=-1), np.full(a1.shape + (2,), beta1)


def star_weights(r1: np.ndarray, r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """STaR-style Stage II: SFT on correct attempts of traces that end correct; no KL."""
    keep = is_correct(r2).astype(float)
    w = np.stack([keep * is_correct(r1), keep], axis=-1)
    return w, np.zeros_like(w)


class ScoreAlgorithm(RLAlgorithm):
    """SCoRe as a hook on the shared RL loop: the stage of each step and the per-turn weights of its rewards."""

    def __init__(self, cfg: ScoreConfig):
        self.cfg, self.schedule = cfg, cfg.schedule()
        self.turns = 2 if cfg.multi_turn else 1
        self.samples_per_attempt = cfg.samples_per_attempt

    def n_steps(self) -> int:
        return len(self.schedule)

    def weights(self, step, rewards):
        c, stage = self.cfg, self.schedule[step]
        r1, r2 = rewards[..., 0], (rewards[..., 1] if c.multi_turn else None)
        if stage == "II" and c.stage2_algo == "star" and r2 is not None:
            w, kl = star_weights(r1, r2)
        else:
            w, kl = turn_weights(r1, r2, stage, c.alpha, c.beta1, c.beta2, c.baseline, c.turn2_credit,
                                 c.samples_per_attempt)
        return w, kl, {"stage": stage}


class Score(Method):
    description = "SCoRe: Stage I (turn-2 RL, turn 1 held to the base by KL) then Stage II (both turns, shaped)"
    trains = True
    config_cls = ScoreConfig
    overrides: dict = {}
    """Fixed ScoreConfig or TrainConfig values that define an ablation (they win over presets and arguments)."""

    def method_config(self, ctx):
        mcfg, tcfg = resolve_method_config(ctx, ScoreConfig, sections=["score", self.name])
        for k, v in self.overrides.items():
            setattr(mcfg if hasattr(mcfg, k) else tcfg, k, v)
        mcfg.__post_init__()
        tcfg.loss_normalization = "sequences"  # REINFORCE: sum of token log-probs per episode, mean over episodes
        return mcfg, tcfg

    def plan(self, ctx):
        mcfg, tcfg = self.method_config(ctx)
        steps = mcfg.schedule()
        m = mcfg.samples_per_attempt if mcfg.multi_turn else 1
        every = tcfg.val_every or max(1, len(steps) // 4)  # "auto" decides after the first step; about this
        detail = " + ".join(f"{steps.count(s)} Stage {s}" for s in ("I", "II") if s in steps)
        return {"steps": len(steps), "detail": detail, "val_problems": tcfg.val_problems,
                "episodes": len(steps) * mcfg.problems_per_step * mcfg.samples_per_problem * m,
                "val_points": len(validation_points(len(steps), every)) if tcfg.val_problems else 0,
                "dtype": tcfg.resolved_dtype("cpu")}

    def train(self, ctx):
        mcfg, tcfg = self.method_config(ctx)
        ctx.run_dir.update_config(method_config=mcfg.__dict__, train_config=tcfg.to_dict())
        trainer = rl_train(ctx, ScoreAlgorithm(mcfg), tcfg, mcfg.problems_per_step, mcfg.samples_per_problem,
                           mcfg.max_new_tokens, mcfg.rollout_log, desc=self.name)
        if dist.is_main():
            training_curves([ctx.run_dir.path], trainer.out_dir / "curves", [self.name], smooth=3)
        return trainer.validator.save_test_policy(trainer, ctx.run_dir.path / "policy")


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
