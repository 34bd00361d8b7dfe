"""Advantage estimators of the on-policy loop, small functions in registries (as verl registers its estimators):

- ``BASELINES``: a baseline b for returns shaped (problems, samples), so that the advantage is return − b.
- ``TURN2_CREDITS``: how turn 2 of a two-attempt rollout is credited from the rewards r1, r2 (SCoRe's
  ``turn2_credit``); each gives the (turn-1, turn-2) advantages.

A new estimator is one function and one ``@register_…`` line; ``methods/score.py`` picks them by name.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
"""Baseline name → b(returns), returns shaped (problems, samples)."""

TURN2_CREDITS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {}
"""Turn-2 credit name → f(r1, r2, alpha, baseline, m) → (a1, a2), each shaped like r2: alpha is the shaping
multiplier on the turn-2 bonus r2 − r1 (0 = no shaping), ``baseline`` a ``BASELINES`` name, m the second attempts
per first attempt."""


def register_baseline(name: str):
    def add(fn):
        BASELINES[name] = fn
        return fn
    return add


def register_turn2_credit(name: str):
    def add(fn):
        TURN2_CREDITS[name] = fn
        return fn
    return add


@register_baseline("rloo")
def leave_one_out(returns: np.ndarray) -> np.ndarray:
    """RLOO: b_ij = mean of returns of the problem's other samples (Ahmadian et al. 2024), which keeps the gradient
    unbiased since b_ij does not depend on sample j."""
    k = returns.shape[1]
    return (returns.sum(axis=1, keepdims=True) - returns) / (k - 1)


@register_baseline("mean")
def batch_mean(returns: np.ndarray) -> np.ndarray:
    return np.full_like(returns, returns.mean())


@register_baseline("none")
def no_baseline(returns: np.ndarray) -> np.ndarray:
    return np.zeros_like(returns)


def baseline_values(returns: np.ndarray, kind: str) -> np.ndarray:
    """Baselines for ``returns`` shaped (problems, samples) by the estimator named ``kind`` (``BASELINES``)."""
    if kind not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")
    return BASELINES[kind](returns)


@register_turn2_credit("paper")
def paper_credit(r1, r2, alpha, baseline, m=1):
    """The paper's: the shaped reward r2 + alpha·(r2 − r1) minus its baseline, including alpha·(r1 − b(r1)),
    which only adds noise."""
    shaped = r2 + alpha * (r2 - r1)
    return r1 - baseline_values(r1, baseline), shaped - baseline_values(shaped, baseline)


@register_turn2_credit("unbiased")
def unbiased_credit(r1, r2, alpha, baseline, m=1):
    """The paper's without the part that depends on the first attempt only, (1 + alpha)·(r2 − b(r2)): same
    expected gradient, less noise."""
    return r1 - baseline_values(r1, baseline), (1.0 + alpha) * (r2 - baseline_values(r2, baseline))


@register_turn2_credit("per_attempt")
def per_attempt_credit(r1, r2, alpha, baseline, m=1):
    """The samples axis is k first attempts × ``m`` continuations of each: turn 2 is leave-one-out among the m
    continuations of one first attempt (a baseline conditioned on y1, so r1 cancels exactly); turn 1 is credited
    once per distinct first attempt, against ``baseline`` over the first attempts."""
    P, km = r2.shape
    a2 = (1.0 + alpha) * (r2 - baseline_values(r2.reshape(P * km // m, m), "rloo").reshape(P, km))
    first = r1.reshape(P, km // m, m)[..., 0]  # one reward per distinct first attempt
    return np.repeat(first - baseline_values(first, baseline), m, axis=1), a2


def turn2_credit(name: str, r1: np.ndarray, r2: np.ndarray, alpha: float, baseline: str,
                 m: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(turn-1, turn-2) advantages by the turn-2 credit named ``name`` (``TURN2_CREDITS``)."""
    if name not in TURN2_CREDITS:
        raise ValueError(f"turn2_credit must be one of {', '.join(TURN2_CREDITS)}, got {name!r}")
    return TURN2_CREDITS[name](r1, r2, alpha, baseline, m)
