"""``scorebench reproduce --table N``: run every row of one of the paper's tables and write it beside the paper's.

Rows reuse run directories: a row's directory is named by the hash of its resolved config, and ``run`` resumes
(or returns at once) when that directory already holds the finished run, so re-running a table recomputes
nothing. Every number in the emitted table is recomputed from the rows' ``episodes.jsonl``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

from . import checks, dist, tables
from .api.registry import METHODS
from .checks import UsageError
from .config import RunConfig
from .jobs import Job, run_side_by_side
from .models import ModelError
from .rundir import RunDir, atomic_write, write_json
from .runner import run, validate
from .training import plan as training_plan

MATH_COLS = list(tables.COLUMNS[:5])
UNCUT_COL = ("delta_uncut", "Δ uncut")
"""Δ on the pairs where neither attempt hit the token cap (metrics.uncut_pairs); the paper has no such column,
so it comes after the paper's columns."""


@dataclass(frozen=True)
class Table:
    number: int
    title: str
    rows: tuple[tuple[str, str], ...]
    """(method, label as in the paper)."""
    task: str
    train_task: str | None = None
    mbpp_r: bool = False
    cols: tuple = tuple(MATH_COLS)
    """The paper's columns (its numbers in paper_tables.json are in this order)."""
    extra_cols: tuple = (UNCUT_COL,)
    """Our columns after the paper's (no paper number)."""


TABLES = {
    1: Table(1, "Self-correction after SFT on self-generated data", (
        ("base", "Base model"), ("star", "STaR D_StaR"), ("star+", "STaR D+_StaR"), ("pair-sft", "Pair-SFT D_SFT"),
        ("pair-sft+", "Pair-SFT D+_SFT")), task="arith"),
    2: Table(2, "Self-correction on the test split (MATH500 in the paper)", (
        ("base", "Base model"), ("self-refine", "Self-Refine"), ("star+", "STaR D+_StaR"),
        ("pair-sft", "Pair-SFT D_SFT"), ("score", "SCoRe")), task="arith-mix"),
    3: Table(3, "Code: HumanEval with MBPP-R (trained on MBPP)", (
        ("base", "Base model"), ("self-refine", "Self-Refine"), ("pair-sft", "Pair-SFT"), ("score", "SCoRe")),
        task="humaneval", train_task="mbpp", mbpp_r=True, extra_cols=()),
    4: Table(4, "SCoRe ablations", (
        ("score", "SCoRe"), ("score-single-turn", "w/o multi-turn training"), ("score-no-stage1", "w/o Stage I"),
        ("score-no-shaping", "w/o reward shaping"), ("score-star-stage2", "w/ STaR instead of REINFORCE in Stage II")),
        task="arith-mix", cols=tuple(MATH_COLS[:3])),
}


def paper_numbers(number: int) -> dict[str, list[float]]:
    return json.loads((files("scorebench") / "data" / "paper_tables.json").read_text())[str(number)]


def command_for(cfg: RunConfig, out: Path) -> str:
    """The ``scorebench run`` command that (re)makes a row's run directory."""
    parts = ["scorebench", "run", "--method", cfg.method, "--task", cfg.task]
    if cfg.train_task:
        parts += ["--train-task", cfg.train_task]
    if cfg.model:
        parts += ["--model", cfg.model]
    if cfg.engine != "hf":
        parts += ["--engine", cfg.engine]
    if cfg.device != "auto":
        parts += ["--device", cfg.device]
    if cfg.limit:
        parts += ["--limit", str(cfg.limit)]
    if cfg.batch_size != 32:  # the CPU default, which every shipped command used
        parts += ["--batch-size", str(cfg.batch_size)]
    if cfg.max_new_tokens:
        parts += ["--max-new-tokens", str(cfg.max_new_tokens)]
    if cfg.seed:
        parts += ["--seed", str(cfg.seed)]
    for k, v in cfg.task_args.items():
        parts += ["--task-arg", f"{k}={json.dumps(v)}"]
    for k, v in cfg.method_args.items():
        parts += ["--preset", str(v)] if k == "preset" else ["--method-arg", f"{k}={json.dumps(v)}"]
    parts += ["--out", str(out)]
    return shlex.join(parts)


def row_configs(t: Table, base: RunConfig) -> list[tuple[str, str, RunConfig, RunConfig | None]]:
    """(method, label, main run config, MBPP-R run config or None) per row."""
    out = []
    for method, label in t.rows:
        trains = METHODS.get(method).trains
        cfg = replace(base, method=method, task=base.task or t.task,
                      train_task=(base.train_task or t.train_task) if trains else None,
                      method_args=base.method_args if trains else {})  # a preset cannot change an untrained row
        out.append((method, label, cfg, None))
    return out


def seed_rows(t: Table, base: RunConfig, seeds: tuple[int, ...] = (),
              rows: tuple[str, ...] = ()) -> list[tuple[str, str, list[RunConfig]]]:
    """(method, label, run configs) per row: one config per seed in ``seeds`` for a row that trains (only those
    named in ``rows``, when given), else the one config at ``base.seed``. Why not every row at every seed: an
    untrained row is evaluated greedily, the same at any seed, and a seed is a new run directory to fill."""
    unknown = sorted(set(rows) - {m for m, _ in t.rows})
    if unknown:
        raise UsageError(f"--seed-rows names rows table {t.number} does not have: {', '.join(unknown)} "
                         f"(its rows: {', '.join(m for m, _ in t.rows)})")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds repeats a seed: {', '.join(map(str, seeds))}")
    out = []
    for method, label, cfg, _ in row_configs(t, base):
        many = seeds and METHODS.get(method).trains and (not rows or method in rows)
        out.append((method, label, [replace(cfg, seed=s) for s in seeds] if many else [cfg]))
    return out


def find_run(runs_dir: Path, cfg: RunConfig) -> Path:
    """The directory in ``runs_dir`` that already holds ``cfg``'s run (any name: matched by the key recorded in
    its config.json, or for runs recorded before keys were, by the key of its config when no preset is involved);
    else the default ``<method>-<task>-<key>``."""
    key = cfg.key()
    default = runs_dir / f"{cfg.method}-{cfg.task}-{key}"
    if default.exists() or not runs_dir.is_dir():
        return default
    for p in sorted(runs_dir.glob("*/config.json")):
        try:
            rec = json.loads(p.read_text())
            old = rec.get("key")
            if old is None and "preset_content" not in rec and not METHODS.get(rec["config"]["method"]).trains:
                old = RunConfig.from_record(rec["config"]).key()
        except Exception:
            continue  # not a run directory of this version
        if old == key:
            return p.parent
    return default


def commands(number: int, base: RunConfig, runs_dir: Path, seeds: tuple[int, ...] = (),
             rows: tuple[str, ...] = ()) -> list[str]:
    """The ``scorebench run`` command of every row (``reproduce --dry-run``): run them anywhere, in parallel or on
    other machines, into ``runs_dir``; ``reproduce`` then finds them and only writes the table. Every row is
    validated first, so a command that would fail is never printed."""
    t = _table(number)
    runs = [(cfg, find_run(Path(runs_dir), cfg)) for _, _, cfgs in seed_rows(t, base, seeds, rows) for cfg in cfgs]
    for cfg, rdir in runs:
        validate(cfg, rdir, writable=False)
    return [command_for(cfg, rdir) for cfg, rdir in runs]


def mbpp_r_config(cfg: RunConfig, rdir: Path) -> RunConfig:
    """A row's MBPP-R run: a trained row's policy (``rdir/policy``) under the base protocol; an untrained row's
    method on the untrained model."""
    if METHODS.get(cfg.method).trains:
        return replace(cfg, task="mbpp-r", train_task=None, method="base", model=str(rdir / "policy"),
                       method_args={})
    return replace(cfg, task="mbpp-r", train_task=None)


def _check_rows(t: Table, base: RunConfig, runs_dir: Path, out_dir: Path, seeds: tuple[int, ...] = (),
                rows: tuple[str, ...] = (), writable: bool = True) -> list:
    """Validate every run before any runs: (method, label, [(config, run dir, plan)]) per row. A finished trained
    row whose policy is gone (run directories ship without weights) cannot make its MBPP-R column."""
    checks.output_dir(out_dir, "--out")
    checks.output_dir(runs_dir, "--runs-dir")
    checked = []
    for method, label, cfgs in seed_rows(t, base, seeds, rows):
        runs = []
        for cfg in cfgs:
            rdir = find_run(runs_dir, cfg)
            plan = validate(cfg, rdir, writable=writable)  # not writable: nothing will run (no memory check)
            if t.mbpp_r and plan.finished and METHODS.get(method).trains:
                rcfg = mbpp_r_config(cfg, rdir)
                try:
                    validate(rcfg, runs_dir / f"{method}-mbpp-r-{rcfg.key()}")
                except ModelError:
                    raise UsageError(f"the MBPP-R column of row {method!r} needs its trained policy "
                                     f"{rdir / 'policy'}, which is missing (run directories ship without weights); "
                                     f"remove {rdir} or use another --runs-dir to retrain the row") from None
            runs.append((cfg, rdir, plan))
        checked.append((method, label, runs))
    return checked


def _table(number: int) -> Table:
    if number not in TABLES:
        raise ValueError(f"--table must be one of {sorted(TABLES)}, got {number}")
    return TABLES[number]


def run_unfinished(checked: list, jobs: int, log_dir: Path, progress: bool = True) -> list[Job]:
    """The rows' unfinished runs, each its own ``scorebench run`` process, ``jobs`` at a time with an equal share
    of the cores (``--jobs``); ``reproduce`` then finds them finished and only reads them (and runs MBPP-R columns,
    which need the trained policies). Refused up front when ``jobs`` runs of the largest expected peak memory would
    not fit in this machine's free memory. Returns the jobs it ran."""
    todo, peak = {}, 0.0
    for _, _, runs in checked:
        for cfg, rdir, plan in runs:  # validated by _check_rows a moment ago
            if rdir not in todo and not plan.finished:
                argv = [sys.executable, "-m", "scorebench", *shlex.split(command_for(cfg, rdir))[1:]]
                todo[rdir] = Job(rdir.name, argv)
                peak = max(peak, (plan.training or {}).get("expected", {}).get("peak_gb", 0.0))
    n = min(jobs, len(todo))
    free = training_plan.available_gb() if n > 1 and peak else None
    if free is not None and n * peak > free:
        raise UsageError(f"--jobs {jobs}: {n} runs side by side expect ~{n * peak:.0f} GB at their peaks, and this "
                         f"machine has {free:.1f} GB free; use fewer --jobs")
    run_side_by_side(list(todo.values()), max(n, 1), log_dir, threads=max(1, (os.cpu_count() or 1) // max(n, 1)),
                     progress=progress)
    return list(todo.values())


def reproduce(number: int, base: RunConfig, runs_dir: Path, out_dir: Path, progress: bool = True,
              seeds: tuple[int, ...] = (), rows: tuple[str, ...] = (), jobs: int = 1,
              finished_only: bool = False) -> dict:
    """Run (or reuse) every row's run directories and write the table. With ``seeds``, a row that trains (of
    ``rows``, when given) runs once per seed and its cells are the seeds' mean with ``metrics.seed_mean``'s CI
    (seeds and problems resampled); each seed's own numbers are listed under the table. ``jobs`` > 1 runs the
    unfinished runs side by side first, each in its own process (``run_unfinished``; logs in ``out_dir/logs``).

    ``finished_only`` runs nothing: the table is written from the runs that have finished (a seeded row from the
    seeds that have), and every run still missing is listed with its command under ``pending`` — the table of a
    study whose long runs are spread over days, marked partial, never a number typed in by hand."""
    t = _table(number)
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    checks.at_least(jobs, 1, "--jobs")
    if jobs > 1 and dist.world() > 1:
        raise UsageError("--jobs runs rows as separate processes; it cannot be combined with a multi-process launch")
    if jobs > 1 and finished_only:
        raise UsageError("--finished-only runs nothing; it cannot be combined with --jobs")
    checked = _check_rows(t, base, runs_dir, out_dir, tuple(seeds), tuple(rows), writable=not finished_only)
    out_dir.mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        run_unfinished(checked, jobs, out_dir / "logs", progress)
    result_rows, pending = [], []
    for method, label, runs in checked:
        per_seed = []
        for cfg, rdir, plan in runs:
            if finished_only and not plan.finished:
                pending.append({"method": method, "label": label, "seed": cfg.seed, "run": str(rdir),
                                "command": command_for(cfg, rdir)})
                continue
            run(cfg, rdir, progress=progress)
            rd = RunDir(rdir)
            seconds, sessions, complete = rd.wall_seconds()
            recorded = rd.config()
            one = {"seed": cfg.seed, "run": str(rdir), "command": command_for(cfg, rdir), "seconds": seconds,
                   "sessions": sessions, "seconds_complete": complete, "git_commit": recorded.get("git_commit", ""),
                   "cpu": recorded.get("machine", {}).get("cpu", ""), "metrics": tables.recompute(rdir)}
            if t.mbpp_r:
                rcfg = mbpp_r_config(cfg, rdir)
                rrdir = runs_dir / f"{method}-mbpp-r-{rcfg.key()}"
                if finished_only and not validate(rcfg, rrdir, writable=False).finished:
                    pending.append({"method": method, "label": label + " MBPP-R", "seed": cfg.seed,
                                    "run": str(rrdir), "command": command_for(rcfg, rrdir)})
                    continue
                run(rcfg, rrdir, progress=progress)
                one.update(mbpp_r_run=str(rrdir), mbpp_r_command=command_for(rcfg, rrdir),
                           mbpp_r=tables.recompute(rrdir)["acc_t2"])
            per_seed.append(one)
        if not per_seed:
            continue
        row = {"method": method, "label": label, **per_seed[0]}
        if len(per_seed) > 1 or len(runs) > 1:  # a seeded row stays one, however many of its seeds have finished
            row.update(_seed_mean_row(per_seed))
        result_rows.append(row)
    result = {"table": number, "title": t.title, "task": base.task or t.task, "rows": result_rows}
    if finished_only:
        result["pending"] = pending
    if dist.is_main():  # one writer in a multi-process run
        write_outputs(t, result, out_dir)
        from .plots import all_figures  # in a function: matplotlib
        figs = [(s["run"], row["label"] + (f" (seed {s['seed']})" if "per_seed" in row else ""))
                for row in result_rows for s in row.get("per_seed", [row])]
        if figs:  # --finished-only before any row has finished: the table lists the commands, nothing to draw
            all_figures([Path(r) for r, _ in figs], out_dir / "figures", [lab for _, lab in figs])
    dist.barrier()
    return result


def _provenance(x: dict) -> str:
    """Wall time, commit and CPU of one run, as its config.json records them (``RunDir.wall_seconds``)."""
    n = x.get("sessions", 1)
    wall = (f"{x['seconds']} s wall time" if x.get("seconds_complete", True) and n == 1 else
            f"{x['seconds']} s wall time over {n} sessions" if x.get("seconds_complete", True) else
            f"at least {x['seconds']} s wall time over {n} sessions, not all recorded")
    parts = [wall] + ([f"commit {x['git_commit'][:7]}"] if x.get("git_commit") else []) + (
        [x["cpu"]] if x.get("cpu") else [])
    return ", ".join(parts) + "; from its config.json"


def _seed_mean_row(per_seed: list[dict]) -> dict:
    """A multi-seed row's cells (``tables.seed_metrics``); MBPP-R as the seeds' plain mean."""
    m = tables.seed_metrics([s["run"] for s in per_seed], [s["metrics"] for s in per_seed])
    out = {"metrics": m, "per_seed": per_seed, "seconds": sum(s["seconds"] for s in per_seed)}
    if "mbpp_r" in per_seed[0]:
        out["mbpp_r"] = sum(s["mbpp_r"] for s in per_seed) / len(per_seed)
    return out


def _cells(t: Table, row: dict, paper: list[float] | None) -> list[tuple[str, str]]:
    """(ours, paper) per column."""
    m = row["metrics"]
    cells = []
    keys = ([("mbpp_r", "MBPP-R")] if t.mbpp_r else []) + list(t.cols) + list(t.extra_cols)
    for i, (key, _) in enumerate(keys):
        ours = f"{100 * row['mbpp_r']:.1f}" if key == "mbpp_r" else tables.fmt(m, key)
        theirs = f"{paper[i]:.1f}" if paper and i < len(paper) else "–"
        cells.append((ours, theirs))
    return cells


def headers(t: Table) -> list[str]:
    return (["MBPP-R"] if t.mbpp_r else []) + [h for _, h in t.cols] + [h for _, h in t.extra_cols]


def write_outputs(t: Table, result: dict, out_dir: Path) -> None:
    paper = paper_numbers(t.number)
    hs = headers(t)
    seeded = [row for row in result["rows"] if "per_seed" in row]
    md = [f"# Table {t.number}: {t.title} — task `{result['task']}`", "",
          "Ours: percentages with paired-bootstrap 95% CIs, recomputed from each row's run directory. "
          "Paper: Kumar et al. 2024 (Gemini models; MATH500 / HumanEval).", ""]
    if result.get("pending"):
        md += [f"**Partial** (`--finished-only`): {len(result['pending'])} run(s) not finished yet are left out "
               "(listed under the table with their commands); a seeded row is the mean of the seeds that have "
               "finished.", ""]
    if seeded:
        md += ["A row whose n reads \"S × n\" is the mean of S training seeds; its CI resamples the seeds and, "
               "within each, the problems (metrics.seed_mean); each seed's numbers are listed under the table.", ""]
    md += ["| method | n | " + " | ".join(f"{h} (ours) | {h} (paper)" for h in hs) + " |",
           "|---|---|" + "---|---|" * len(hs)]
    csv_buf = io.StringIO()
    w = csv.writer(csv_buf)
    w.writerow(["method", "label", "n", "seeds"]
               + [f"{h} {s}" for h in hs for s in ("ours", "ours_lo", "ours_hi", "paper")])
    tex = ["\\begin{tabular}{l" + "rr" * len(hs) + "}", "\\toprule",
           "Method & " + " & ".join(f"{_tex(h)} (ours) & {_tex(h)} (paper)" for h in hs) + " \\\\", "\\midrule"]
    for row in result["rows"]:
        cells = _cells(t, row, paper.get(row["method"]))
        m = row["metrics"]
        n = f"{m['n_seeds']} × {m['n']}" if "per_seed" in row else m.get("n", 0)
        md.append(f"| {row['label']} | {n} | " + " | ".join(f"{a} | {b}" for a, b in cells) + " |")
        vals = []
        keys = (["mbpp_r"] if t.mbpp_r else []) + [k for k, _ in t.cols] + [k for k, _ in t.extra_cols]
        for i, k in enumerate(keys):
            p = paper.get(row["method"])
            if k == "mbpp_r":
                vals += [round(100 * row["mbpp_r"], 2), "", ""]
            else:
                lo, hi = m.get("ci95", {}).get(k, [None, None])
                vals += [round(100 * m[k], 2) if k in m else "", round(100 * lo, 2) if lo is not None else "",
                         round(100 * hi, 2) if hi is not None else ""]
            vals.append(p[i] if p and i < len(p) else "")
        w.writerow([row["method"], row["label"], m.get("n", 0),
                    " ".join(str(x["seed"]) for x in row.get("per_seed", [row]))] + vals)
        tex.append(_tex(row["label"]) + " & " + " & ".join(f"{_tex(a)} & {b}" for a, b in cells) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}"]
    if seeded:
        md += ["", "Each seed of the multi-seed rows:", "",
               "| method | seed | n | " + " | ".join(h for _, h in t.cols) + " |",
               "|---|---|---|" + "---|" * len(t.cols)]
        md += [f"| {row['label']} | {x['seed']} | {x['metrics'].get('n', 0)} | "
               + " | ".join(tables.fmt(x["metrics"], k) for k, _ in t.cols) + " |"
               for row in seeded for x in row["per_seed"]]
    md += ["", "Commands (each row's run directory is the source of its numbers):", ""]
    for row in result["rows"]:
        for x in row.get("per_seed", [row]):
            name = row["label"] + (f" (seed {x['seed']})" if "per_seed" in row else "")
            md.append(f"- {name}: `{x['command']}` ({_provenance(x)})")
            if "mbpp_r_command" in x:
                md.append(f"- {name} MBPP-R: `{x['mbpp_r_command']}`")
    if result.get("pending"):
        md += ["", "Not finished yet (left out of the table):", ""]
        md += [f"- {x['label']} (seed {x['seed']}): `{x['command']}`" for x in result["pending"]]
    stem = f"table{t.number}"
    atomic_write(out_dir / f"{stem}.md", "\n".join(md) + "\n")
    atomic_write(out_dir / f"{stem}.csv", csv_buf.getvalue())
    atomic_write(out_dir / f"{stem}.tex", "\n".join(tex) + "\n")
    write_json(out_dir / f"{stem}.json", result)


def _tex(s: str) -> str:
    return (s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("Δ", "$\\Delta$")
            .replace("→", "$\\to$").replace("&", "\\&").replace("[", "{[}").replace("]", "{]}"))
