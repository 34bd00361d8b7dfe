"""Markdown tables from run directories (the data flows one way: episodes → metrics → tables)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import metrics as M
from . import results
from .results import recompute, row_label  # noqa: F401  (their old place: reproduce, runner, plots, tests)
from .rundir import RunDir

COLUMNS = [("acc_t1", "Acc@t1"), ("acc_t2", "Acc@t2"), ("delta", "Δ(t1,t2)"), ("delta_i2c", "Δ i→c"),
           ("delta_c2i", "Δ c→i"), ("delta_uncut", "Δ uncut")]
"""The paper's columns, then Δ on the pairs where neither attempt was cut by the token cap (a cut first attempt
that the second merely finishes is not a correction; metrics.uncut_pairs)."""


DIAGNOSTICS = [("truncated_t1", "cut t1"), ("truncated_t2", "cut t2"), ("tokens_t1", "tokens t1"),
               ("tokens_t2", "tokens t2"), ("identical_t1_t2", "y2 = y1")]
"""Behavior columns for ``scorebench table --diagnostics``: answers cut by the token cap (graded on the text they
have, so some score 1), mean
generated tokens, second attempts identical to the first (the collapse symptom)."""


def later_columns(turns: int) -> list[tuple[str, str]]:
    """With ``--turns K`` > 2, each later attempt's accuracy and its change from the one before (metrics.json's
    ``acc_t3``, ``delta_t2t3``, …), after the paper's (t1, t2) columns."""
    return [c for k in range(3, turns + 1) for c in ((f"acc_t{k}", f"Acc@t{k}"),
                                                     (f"delta_t{k - 1}t{k}", f"Δ(t{k - 1},t{k})"))]


def fmt(m: dict, key: str, ci: bool = True) -> str:
    if key not in m:
        return "–"
    if key.startswith("tokens_"):
        return f"{m[key]:.1f}"
    s = f"{100 * m[key]:.1f}"
    if ci and key in m.get("ci95", {}):
        lo, hi = m["ci95"][key]
        s += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return s


def table(rows: list[tuple[str, str, dict]], ci: bool = True, diagnostics: bool = False,
          n_cells: list[str] | None = None, text_cols: list[tuple[str, str]] = ()) -> str:
    """``rows`` = (method, task, metrics). Percentages with 95% CIs in brackets; ``n_cells`` replaces the n
    column's text (to mark incomplete runs); ``text_cols`` (key, header) are last, their values printed as they
    are ("–" where a row has none)."""
    turns = max((m.get("turns", 2) for _, _, m in rows), default=2)
    cols = (COLUMNS if turns >= 2 else COLUMNS[:1]) + later_columns(turns)
    if diagnostics:
        cols = cols + (DIAGNOSTICS if turns >= 2 else [DIAGNOSTICS[0], DIAGNOSTICS[2]])
        cols += [c for k in range(3, turns + 1) for c in ((f"truncated_t{k}", f"cut t{k}"),
                                                            (f"tokens_t{k}", f"tokens t{k}"))]
    head = "| method | task | n | " + " | ".join(h for _, h in [*cols, *text_cols]) + " |"
    sep = "|" + "---|" * (3 + len(cols) + len(text_cols))
    lines = [head, sep]
    for i, (method, task, m) in enumerate(rows):
        n = n_cells[i] if n_cells else m.get("n", 0)
        cells = [fmt(m, k, ci) for k, _ in cols] + [str(m.get(k, "–")) for k, _ in text_cols]
        lines.append(f"| {method} | {task} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def n_cell(n: int, total: int | None, finished: bool) -> str:
    """The n column of a run: ``n``, or ``n of N (incomplete)`` for a run that stopped before every test problem
    had its episode (killed, or still running) — its numbers are not the full run's. A run ``finished`` when it
    recorded ``total_seconds``; N (``total``) is known for runs that record ``n_problems``."""
    if finished and (total is None or n >= total):
        return str(n)
    return f"{n} of {total} (incomplete)" if total is not None else f"{n} (incomplete)"


def seed_groups(runs: list[str | Path]) -> list[list[str | Path]]:
    """The runs grouped by everything their config.json records but the seed (config, preset content), in
    first-seen order: finished runs of one configuration trained with different seeds share a group; an
    unfinished run is a group of its own (its episodes are not all there to average)."""
    groups: dict[str, list] = {}
    for r in runs:
        rec = RunDir(r).config()
        same = json.dumps({"config": {k: v for k, v in rec.get("config", {}).items() if k != "seed"},
                           "preset": rec.get("preset_content")}, sort_keys=True)
        groups.setdefault(same if "total_seconds" in rec else f"unfinished:{r}", []).append(r)
    return list(groups.values())


def seed_metrics(runs: list[str | Path], per_run: list[dict] | None = None) -> dict:
    """One row's numbers for runs that differ only in their seed: ``metrics.seed_mean`` over their test episodes,
    and Δ uncut as the seeds' plain mean, without a CI (their uncut pairs differ). ``per_run``: each run's
    ``recompute`` when the caller has it already."""
    m = M.seed_mean([RunDir(r).episodes() for r in runs])
    per_run = per_run or [recompute(r) for r in runs]
    uncut = [x.get("delta_uncut") for x in per_run]
    if None not in uncut:
        m["delta_uncut"] = sum(uncut) / len(uncut)
    m["runs_delta"] = runs_delta_cell(per_run)
    return m


def runs_delta_cell(per_run: list[dict]) -> str:
    """How many of a seed group's runs have a Δ whose own 95% CI lies above 0 / below 0, of how many
    ("4↑ 0↓ of 16"). A seed mean hides what the cpu-scale studies found: SCoRe's self-correction appears in some
    runs of one configuration and not in others (results/study-arith.md), so the count is shown beside the mean."""
    cis = [x.get("ci95", {}).get("delta") for x in per_run]
    up = sum(1 for c in cis if c and c[0] > 0)
    down = sum(1 for c in cis if c and c[1] < 0)
    return f"{up}↑ {down}↓ of {len(per_run)}"


def seed_mean_table(runs: list[str | Path], ci: bool = True) -> str:
    """``table_from_runs`` with each group of ``seed_groups`` of two or more runs as one row: the seeds' mean with
    ``metrics.seed_mean``'s CI (seeds and problems resampled), n as "seeds × problems", labelled by the method and
    its seeds, and a last column counting the runs whose own Δ is above / below 0 (``runs_delta_cell``). A run alone
    in its group keeps its own row (labelled as ``table_from_runs`` does)."""
    groups = seed_groups(runs)
    configs = [RunDir(g[0]).config() for g in groups]
    labels = [results.row_label(c) for c in configs]
    margs = [c.get("config", {}).get("method_args") or {} for c in configs]
    rows, n_cells = [], []
    for gi, (group, (method, task)) in enumerate(zip(groups, labels)):
        if len(group) == 1:
            m, rec = recompute(group[0]), configs[gi]
            m["runs_delta"] = runs_delta_cell([m])
            rows.append((Path(group[0]).name if labels.count((method, task)) > 1 else method, task, m))
            n_cells.append(n_cell(m.get("n", 0), rec.get("n_problems"), "total_seconds" in rec))
            continue
        m = seed_metrics(group)
        seeds = ",".join(str(RunDir(r).config().get("config", {}).get("seed", 0)) for r in group)
        variant = _variant(margs[gi], [a for j, a in enumerate(margs) if labels[j] == (method, task) and j != gi])
        rows.append((f"{method}{variant} (seeds {seeds})", task, m))
        n_cells.append(f"{m['n_seeds']} × {m['n']}")
    return table(rows, ci=ci, n_cells=n_cells, text_cols=[("runs_delta", "runs: Δ CI > 0 ↑, < 0 ↓")])


def _variant(mine: dict, others: list[dict]) -> str:
    """What tells a seed group apart from the other groups of its (method, task): the method arguments (``mine``
    against each of ``others``) whose values differ (" dtype=float32"), so two configurations' seed means are not
    labelled alike; "" when alone."""
    keys = sorted({k for o in others for k in set(o) | set(mine) if o.get(k) != mine.get(k)})
    return "".join(f" {k}={mine.get(k, '-')}" for k in keys)


def table_from_runs(runs: list[str | Path], ci: bool = True, diagnostics: bool = False) -> str:
    """One row per run directory (``results.load``); rows whose (method, task) repeat (variants of one method) are
    labelled by their directory name instead."""
    df = results.load(runs)
    pairs = list(zip(df["method"], df["task"]))
    labels = [(run, t) if pairs.count((m, t)) > 1 else (m, t) for run, (m, t) in zip(df["run"], pairs)]
    ms = [results.metrics_of(row) for _, row in df.iterrows()]
    totals = [None if pd.isna(row.get("n_problems")) else int(row["n_problems"]) for _, row in df.iterrows()]
    cells = [n_cell(m.get("n", 0), total, finished) for m, total, finished in zip(ms, totals, df["finished"])]
    out = table([(*lab, m) for lab, m in zip(labels, ms)], ci=ci, diagnostics=diagnostics, n_cells=cells)
    if any("incomplete" in c for c in cells):
        out += ("\nincomplete: the run stopped (or is still running) before every test problem had its episode; "
                "rerun its command to finish it.\n")
    return out
