"""Run directories as pandas DataFrames, for notebooks and for the tables (``tables.table_from_runs``).

    import scorebench.results as R
    runs = R.load(sorted(Path("results/runs").glob("score-*")))           # one row per run
    eps = R.load(["results/runs/base-arith"], per="episode")               # one row per episode
    eps.groupby("meta.steps")[["correct_t1", "correct_t2"]].mean()

Metrics are recomputed from each run's ``episodes.jsonl`` (``metrics.compute``, as ``scorebench table`` does),
never read from its ``metrics.json``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import metrics as M
from .protocol import problem_id
from .rundir import RunDir

IDENTITY = ["run", "path", "method", "task", "seed"]
"""The first columns of both frames: the run directory's name and path, and its config's method, task and seed."""

INTS = ("n", "turns", "n_uncut")
"""Metrics that are counts (int in ``metrics.compute``'s dict)."""


def recompute(run: str | Path) -> dict:
    """Metrics of a run directory, recomputed from episodes.jsonl."""
    rd = RunDir(run)
    return M.compute(rd.episodes(), seed=rd.config().get("config", {}).get("seed", 0))


def row_label(cfg: dict) -> tuple[str, str]:
    """(method, task) of a run's config.json ("?" where missing)."""
    c = cfg.get("config", {})
    return c.get("method", "?"), c.get("task", "?")


def identity(run: str | Path, cfg: dict) -> dict:
    method, task = row_label(cfg)
    return {"run": Path(run).name, "path": str(run), "method": method, "task": task,
            "seed": cfg.get("config", {}).get("seed", 0)}


def run_row(run: str | Path) -> dict:
    """One run as a flat dict: ``IDENTITY``; ``finished`` (it recorded ``total_seconds``; it may still have fewer
    than ``n_problems`` episodes); the metrics (no ``breakdown``: group the episode frame by its ``meta.*`` columns
    instead) with each 95% CI as ``<metric>_lo`` / ``<metric>_hi``; then every field of config.json, nested ones
    with dotted names (``config.seed``, ``train_config.lr``, ``method_config.alpha``, ``versions.torch``). A config
    field whose name a metric or identity column already holds gets ``config.json:`` in front."""
    cfg = RunDir(run).config()
    m = recompute(run)
    row = {**identity(run, cfg), "finished": "total_seconds" in cfg}
    row.update({k: v for k, v in m.items() if k not in ("ci95", "breakdown")})
    for k, (lo, hi) in m.get("ci95", {}).items():
        row[f"{k}_lo"], row[f"{k}_hi"] = lo, hi
    for k, v in pd.json_normalize(cfg, sep=".").iloc[0].items():
        row["config.json:" + k if k in row else k] = v
    return row


def is_metric(column: str) -> bool:
    """A column of ``metrics.compute``'s scalars (``n``, ``turns``, ``n_uncut``, acc / delta / truncated / tokens
    per attempt, the edit-ratio and identical-attempt diagnostics), not a CI bound."""
    return (column in INTS or column.startswith(("acc_t", "delta", "truncated_t", "tokens_t", "edit_ratio_",
                                                 "identical_t"))) and not column.endswith(("_lo", "_hi"))


def metrics_of(row: pd.Series) -> dict:
    """The metrics dict of one row of ``load(per="run")`` (``metrics.compute``'s, less ``breakdown``): the metric
    columns this run has (not NaN), with the CIs under ``ci95``."""
    m = {k: (int(v) if k in INTS else float(v)) for k, v in row.items() if is_metric(k) and pd.notna(v)}
    ci = {k: [float(row[f"{k}_lo"]), float(row[f"{k}_hi"])] for k in m if pd.notna(row.get(f"{k}_lo"))}
    return {**m, "ci95": ci} if ci else m


def episode_rows(run: str | Path) -> list[dict]:
    """One run's episodes as flat dicts: ``IDENTITY``, the episode ``id``, its ``problem`` (``id`` less a
    ``#k`` sample suffix), ``prompt`` (the first turn's), ``attempts`` (graded turns), then per attempt k
    ``reward_t{k}``, ``correct_t{k}`` (``metrics.is_correct``), ``finish_reason_t{k}``, ``truncated_t{k}`` (cut by
    the token cap), ``tokens_t{k}``, ``response_t{k}``, and the task's metadata as ``meta.<key>``."""
    rd = RunDir(run)
    ident = identity(run, rd.config())
    rows = []
    for ep in rd.episodes():
        row = {**ident, "id": ep.id, "problem": problem_id(ep.id), "prompt": ep.turns[0].prompt if ep.turns else None,
               "attempts": len(ep.attempts)}
        for k, t in enumerate(ep.attempts, 1):
            row.update({f"reward_t{k}": t.reward, f"correct_t{k}": bool(M.is_correct(t.reward)),
                        f"finish_reason_t{k}": t.finish_reason, f"truncated_t{k}": t.finish_reason == "length",
                        f"tokens_t{k}": t.n_tokens, f"response_t{k}": t.response})
        row.update({f"meta.{k}": v for k, v in ep.meta.items()})
        rows.append(row)
    return rows


def load(run_dirs, per: str = "run") -> pd.DataFrame:
    """Run directories as a DataFrame: ``per="run"`` one row per run (``run_row``: identity, metrics with CIs,
    config fields), ``per="episode"`` one row per episode of every run (``episode_rows``), in the order given."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    if per == "run":
        return pd.DataFrame([run_row(r) for r in run_dirs])
    if per == "episode":
        return pd.DataFrame([row for r in run_dirs for row in episode_rows(r)])
    raise ValueError(f"per must be 'run' or 'episode', got {per!r}")
