"""The metric suite, computed from episodes only (never from a method's own bookkeeping).

All values are fractions in [0, 1] (tables print percentages). For K attempts: ``acc_t{k}`` for each attempt,
and for each consecutive pair (k, k+1) ``delta``, ``delta_i2c``, ``delta_c2i``; the unsuffixed keys are the
paper's (t1, t2) pair. 95% CIs come from a paired bootstrap over problems: one resample of problems is used for
every statistic, so a CI on Δ accounts for the correlation between the two attempts.
"""
from __future__ import annotations

import difflib
from collections import defaultdict

import numpy as np

from .api.types import Episode

N_BOOTSTRAP = 1000
CORRECT_THRESHOLD = 0.5  # rewards are binary in every built-in task; a reward above this counts as correct


def is_correct(reward):
    """The one definition of a correct attempt (a float, or a numpy array of rewards elementwise)."""
    if reward is None:
        return False
    return reward > CORRECT_THRESHOLD


def correctness(episodes: list[Episode]) -> np.ndarray:
    """(n_episodes, K) boolean matrix of correct attempts; all episodes must have the same K."""
    if not episodes:
        return np.zeros((0, 0), dtype=bool)
    ks = {len(e.rewards) for e in episodes}
    if len(ks) != 1:
        raise ValueError(f"episodes have different numbers of attempts: {sorted(ks)}")
    return np.array([[is_correct(r) for r in e.rewards] for e in episodes], dtype=bool)


def _point(c: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    K = c.shape[1]
    for k in range(K):
        out[f"acc_t{k + 1}"] = float(c[:, k].mean())
    for k in range(K - 1):
        a, b = c[:, k], c[:, k + 1]
        sfx = "" if k == 0 else f"_t{k + 1}t{k + 2}"
        out["delta" + sfx] = float(b.mean() - a.mean())
        out["delta_i2c" + sfx] = float((~a & b).mean())
        out["delta_c2i" + sfx] = float((a & ~b).mean())
    return out


def compute(episodes: list[Episode], n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
            breakdown_keys: tuple[str, ...] = ("subject", "level", "steps")) -> dict:
    """Metrics with 95% paired-bootstrap CIs, breakdowns by metadata, and the edit-distance diagnostic."""
    c = correctness(episodes)
    n = c.shape[0]
    if n == 0:
        return {"n": 0}
    point = _point(c)
    rng = np.random.default_rng(seed)
    boots = defaultdict(list)
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        for k, v in _point(c[idx]).items():
            boots[k].append(v)
    ci = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in boots.items()}
    out: dict = {"n": n, "turns": c.shape[1], **point, "ci95": ci}
    if c.shape[1] >= 2:
        u = uncut_pairs(episodes, c, n_bootstrap, seed)
        ci.update(u.pop("ci95", {}))
        out.update(u)
    for k in range(c.shape[1]):  # answers cut by max_new_tokens: graded on the text they have (a cap shows here)
        out[f"truncated_t{k + 1}"] = float(np.mean([e.attempts[k].finish_reason == "length" for e in episodes]))
        out[f"tokens_t{k + 1}"] = float(np.mean([e.attempts[k].n_tokens for e in episodes]))
    if c.shape[1] >= 2:
        ratios = [edit_distance_ratio(e.attempts[0].response, e.attempts[1].response) for e in episodes]
        out["edit_ratio_mean"] = float(np.mean(ratios))
        out["edit_ratio_median"] = float(np.median(ratios))
        out["identical_t1_t2"] = float(np.mean([r == 0 for r in ratios]))
    breakdown = {}
    for key in breakdown_keys:
        groups = defaultdict(list)
        for i, e in enumerate(episodes):
            if key in e.meta and e.meta[key] is not None:
                groups[str(e.meta[key])].append(i)
        if len(groups) > 1:
            breakdown[key] = {g: {"n": len(ix), **_point(c[ix])} for g, ix in sorted(groups.items())}
    if breakdown:
        out["breakdown"] = breakdown
    return out


def uncut_pairs(episodes: list[Episode], c: np.ndarray, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """Δ(t1, t2) on the pairs where neither attempt hit the token cap (``delta_uncut``, ``n_uncut``, CI).

    Why: a first attempt cut by ``max_new_tokens`` scores whatever its last integer happens to be, and a second
    attempt that merely finishes it counts as a correction. Δ on uncut pairs beside Δ shows how much of Δ is
    that. The CI resamples the uncut pairs (their count is fixed by the run)."""
    keep = np.array([e.attempts[0].finish_reason != "length" and e.attempts[1].finish_reason != "length"
                     for e in episodes], dtype=bool)
    m = int(keep.sum())
    if m == 0:
        return {"n_uncut": 0}
    sub = c[keep][:, :2]
    delta = lambda x: float(x[:, 1].mean() - x[:, 0].mean())  # noqa: E731
    rng = np.random.default_rng(seed + 1)
    boots = [delta(sub[rng.integers(0, m, m)]) for _ in range(n_bootstrap)]
    return {"n_uncut": m, "delta_uncut": delta(sub),
            "ci95": {"delta_uncut": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]}}


def edit_distance_ratio(a: str, b: str) -> float:
    """Normalized edit distance between two attempts: 0 = identical, 1 = nothing in common.

    The paper's behavior-collapse diagnostic: a model that copies its first attempt puts its mass near 0.
    We use 1 − difflib's similarity ratio (2·matches / total length), a standard normalized distance.
    """
    if not a and not b:
        return 0.0
    return 1.0 - difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


N_SEED_BOOTSTRAP = 10_000


def seed_mean(per_seed: list[list[Episode]], n_bootstrap: int = N_SEED_BOOTSTRAP, seed: int = 0,
              chunk: int = 500) -> dict:
    """The mean over training seeds of each statistic, with a 95% CI from a two-level bootstrap.

    Why two levels: a trained row's number varies with the seed it was trained with *and* with the test
    problems it is measured on; a CI over problems alone (``compute``) says nothing about the next seed. Each
    draw resamples the seeds (with replacement, as many as there are) and, inside each drawn seed, that seed's
    problems (paired: both attempts of a problem together, independently for every slot of the draw, so a seed
    drawn twice is not the same resample twice), then averages the seeds' statistics; the CI is the 2.5th and
    97.5th percentiles over ``n_bootstrap`` draws. With few seeds the seed level is coarse (3 seeds give 10
    distinct seed multisets): the interval is honest about that rather than narrow.

    Returns ``n_seeds``, ``n`` (problems per seed), ``turns``, the means of ``_point``'s keys, ``ci95`` and
    ``per_seed`` (each seed's point values)."""
    cs = [correctness(eps) for eps in per_seed]
    if not cs or any(c.shape[0] == 0 for c in cs):
        raise ValueError("seed_mean needs at least one seed, each with episodes")
    if len({c.shape for c in cs}) != 1:
        raise ValueError(f"seeds were evaluated on different problem sets: {sorted({c.shape for c in cs})}")
    S, (n, K) = len(cs), cs[0].shape
    points = [_point(c) for c in cs]
    keys = list(points[0])
    rng = np.random.default_rng(seed)
    stacked = np.stack(cs)                                        # (S, n, K)
    draws = []
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        which = rng.integers(0, S, (b, S))                        # the seeds of each draw's S slots
        problems = rng.integers(0, n, (b, S, n))                  # each slot's resample of its seed's problems
        c = stacked[which[:, :, None], problems]                  # (b, S, n, K)
        acc = c.mean(axis=2)                                      # (b, S, K)
        stats = {f"acc_t{k + 1}": acc[:, :, k] for k in range(K)}
        for k in range(K - 1):
            a, nxt = c[..., k], c[..., k + 1]
            sfx = "" if k == 0 else f"_t{k + 1}t{k + 2}"
            stats["delta" + sfx] = acc[:, :, k + 1] - acc[:, :, k]
            stats["delta_i2c" + sfx] = (~a & nxt).mean(axis=2)
            stats["delta_c2i" + sfx] = (a & ~nxt).mean(axis=2)
        draws.append(np.stack([stats[k].mean(axis=1) for k in keys], axis=1))  # (b, n_keys)
    d = np.concatenate(draws)
    ci = {k: [float(np.percentile(d[:, i], 2.5)), float(np.percentile(d[:, i], 97.5))] for i, k in enumerate(keys)}
    return {"n_seeds": S, "n": n, "turns": K, **{k: float(np.mean([p[k] for p in points])) for k in keys},
            "ci95": ci, "per_seed": points}
