"""``scorebench lm-eval``: Acc@t1 measured by lm-evaluation-harness beside scorebench's, problem by problem.

lm-eval runs its own HF model (``lm_eval.models.huggingface.HFLM``, transformers ``generate``) on the task files in
this folder: the protocol's turn-1 prompt with the chat template and generation prompt, greedy, the task's
max_new_tokens, stop at the end-of-turn token, graded by the task's own ``evaluate``. scorebench's side is its
protocol with ``turns=1`` at temperature 0 on the same problems and model — read from the run directory's
``episodes.jsonl`` when that run is comparable (same task and task arguments, greedy, same token cap, every
problem present), else run now. What differs is the harness: the decode loop, batching and padding, and by
default nothing numeric (both compute in float32; ``compute_dtype="auto"`` gives what ``scorebench run`` uses by
default, bf16 matmuls on a CPU with native bf16).

Files written to ``out``: ``results.json`` and ``samples_<task>.jsonl`` (lm-eval's results JSON and logged
samples, written by lm-eval's ``EvaluationTracker`` as ``lm_eval --output_path --log_samples`` writes them, minus
the timestamp in the names), ``episodes_<task>.jsonl`` (the scorebench episodes compared), ``comparison.json``
and ``comparison.md``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..machine import describe, versions
from . import LM_EVAL_TASKS, TASKS_DIR

LM_EVAL_PIN = "lm-eval[hf]==0.4.13"
"""The version the project pins (pyproject's ``test`` extra): task-file keys and ``simple_evaluate`` as used here."""


class LmEvalUsageError(ValueError):
    """Bad input to ``scorebench lm-eval``; one line for the CLI (exit 2)."""


@dataclass
class Target:
    model: str
    """A directory or hub id ``from_pretrained`` loads (both harnesses load it)."""
    label: str
    """How the model is named in the comparison."""
    run_dir: Path | None
    """The scorebench run directory, when the target is one."""
    out: Path


def is_run_dir(path: Path) -> bool:
    """A scorebench run directory: a ``policy/`` or an ``episodes.jsonl`` (a model directory has neither)."""
    return path.is_dir() and ((path / "policy").is_dir() or (path / "episodes.jsonl").is_file())


def task_names(spec: str) -> list[str]:
    """lm-eval task names from ``--tasks`` (``scorebench_arith`` or plain ``arith``), checked."""
    names = []
    for raw in (s.strip() for s in spec.split(",")):
        if not raw:
            continue
        name = raw if raw in LM_EVAL_TASKS else f"scorebench_{raw}"
        if name not in LM_EVAL_TASKS:
            raise LmEvalUsageError(f"--tasks: unknown task {raw!r} (known: {', '.join(LM_EVAL_TASKS)})")
        if name not in names:
            names.append(name)
    if not names:
        raise LmEvalUsageError("--tasks: give at least one task")
    return names


def resolve_target(target: str, out: str | None) -> Target:
    """The model to evaluate and where results go; raises one-line errors for a missing path or an unfinished
    policy, before anything loads."""
    from .. import models
    p = Path(target).expanduser()
    if is_run_dir(p):
        policy = p / "policy"
        if policy.is_dir():
            if not (policy / "config.json").exists() and not (policy / "adapter_config.json").exists():
                raise LmEvalUsageError(f"{policy} holds no finished policy (no config.json)")
            model, label = str(policy), str(policy)
        else:  # an evaluation-only run (e.g. base): its model is the one its config names
            cfg = _run_config(p)
            name = (cfg.get("config") or {}).get("model")
            models.check(name)
            model, label = models.resolve(name), name or models.EMBEDDED
        return Target(model=model, label=label, run_dir=p, out=Path(out) if out else p / "lm_eval")
    found = models.check(target)  # ModelError (one line) for a missing path
    if found is not None and not Path(found).exists() and not _in_hub_cache(found):
        raise LmEvalUsageError(f"{target!r} is no run directory, model directory or locally cached hub model "
                               "(this command runs offline)")
    label = target if found is not None else models.EMBEDDED
    default = "embedded" if found is None else Path(target).name or "model"
    return Target(model=models.resolve(target), label=label, run_dir=None,
                  out=Path(out) if out else Path("runs") / f"lm-eval-{default}")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects
        return False


def _run_config(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LmEvalUsageError(f"--out {out} is a file, not a directory")
    parent = next((q for q in [out, *out.parents] if q.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LmEvalUsageError(f"--out {out}: {parent} is not writable")


def _require_lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.models import huggingface  # noqa: F401  (needs transformers, torch, accelerate)
    except ImportError as e:
        raise LmEvalUsageError(f"lm-eval is not installed ({e}); `make setup` installs {LM_EVAL_PIN}") from None
    return lm_eval


def run_lm_eval(model: str, tasks: list[str], limit: int | None = None, indices: list[int] | None = None,
                batch_size: int = 32, dtype: str = "float32", device: str = "cpu",
                task_args: dict | None = None, tracker=None) -> dict:
    """lm-eval's ``simple_evaluate`` on our task files with its HF model: chat template, logged samples, offline.
    ``indices`` picks test problems by position (lm-eval's ``samples``) instead of the first ``limit``."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lm_eval = _require_lm_eval()
    from lm_eval.tasks import TaskManager
    tm = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=dict(task_args or {}))
    return lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": model, "dtype": dtype}, device=device, tasks=list(tasks),
        task_manager=tm, batch_size=batch_size, limit=None if indices else limit,
        samples={t: list(indices) for t in tasks} if indices else None,
        apply_chat_template=True, log_samples=True, evaluation_tracker=tracker)


def save_lm_eval(res: dict, out: Path, tracker) -> dict[str, list[dict]]:
    """Write lm-eval's results JSON and per-task samples with lm-eval's own writer (as its CLI does), renamed from
    its timestamped names to ``results.json`` and ``samples_<task>.jsonl``; returns the samples as written."""
    samples = res.pop("samples")
    stale = set(out.glob("results_*.json")) | set(out.glob("samples_*_*.jsonl"))
    tracker.save_results_aggregated(results=res, samples=samples)
    for task in res["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    date = tracker.date_id
    os.replace(out / f"results_{date}.json", out / "results.json")
    written = {}
    for task in res["configs"]:
        path = out / f"samples_{task}.jsonl"
        os.replace(out / f"samples_{task}_{date}.jsonl", path)
        written[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for p in stale:
        p.unlink(missing_ok=True)
    return written


def scorebench_turn1(model: str, task, examples: list[dict], max_new_tokens: int, batch_size: int = 32,
                     dtype: str = "float32", compute_dtype: str = "float32", device: str = "cpu"):
    """scorebench's protocol with turns=1, greedy, on ``examples``: (episodes, engine description)."""
    from ..engines import SamplingParams
    from ..engines.hf import HFEngine
    from ..protocol import ProtocolConfig, run_protocol
    engine = HFEngine(model_name=model, dtype=dtype, device=device, batch_size=batch_size,
                      compute_dtype=compute_dtype)
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=0)
    eps = run_protocol(engine, task, examples, params, protocol=ProtocolConfig(turns=1), chunk_size=batch_size,
                       progress=True)
    return eps, engine.describe()


def run_episodes(run_dir: Path, task_name: str, task_args: dict, ids: list[str], max_new_tokens: int):
    """The run's turn-1 episodes for ``ids`` when they measure the same thing as lm-eval (same task and task
    arguments, greedy, the same token cap, one sample per problem, every id present): (episodes, engine record,
    None), else (None, None, why not)."""
    from ..protocol import Episode
    cfg = _run_config(run_dir)
    c = cfg.get("config") or {}
    if c.get("task") != task_name:
        return None, None, f"the run evaluated task {c.get('task')!r}"
    if (c.get("task_args") or {}) != task_args:
        return None, None, "the run used other task arguments"
    if float(c.get("temperature", 0.0)) != 0.0:
        return None, None, f"the run sampled at temperature {c.get('temperature')}"
    if cfg.get("max_new_tokens") != max_new_tokens:
        return None, None, f"the run's token cap was {cfg.get('max_new_tokens')}, lm-eval's {max_new_tokens}"
    found = {}
    path = run_dir / "episodes.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                ep = Episode.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a half-written last line of a killed run
            found[ep.id] = ep
    missing = [i for i in ids if i not in found]
    if missing:
        return None, None, f"the run has no episode for {len(missing)} of the {len(ids)} problems"
    return [found[i] for i in ids], cfg.get("engine"), None


def compare(task, samples: list[dict], episodes) -> dict:
    """Per-problem agreement of lm-eval's ``acc`` (its logged samples) and scorebench's turn-1 reward."""
    lm = {str(s["doc"]["id"]): s for s in samples}
    sb = {ep.id: ep for ep in episodes}
    ids = list(lm)
    rows = []
    for i in ids:
        s, ep = lm[i], sb[i]
        lm_resp = s["resps"][0][0] if s.get("resps") else ""
        sb_resp = ep.turns[0].response
        rows.append({"id": i, "lm_eval": bool(s["acc"]), "scorebench": bool(ep.turns[0].reward),
                     "same_response": lm_resp.strip() == sb_resp.strip(), "lm_eval_response": lm_resp,
                     "scorebench_response": sb_resp, "doc": s["doc"], "info": ep.turns[0].info or {}})
    n = len(rows)
    disagree = [{"id": r["id"], "lm_eval": r["lm_eval"], "scorebench": r["scorebench"],
                 "lm_eval_pred": task.evaluate(r["doc"], r["lm_eval_response"]).get("pred"),
                 "scorebench_pred": r["info"].get("pred"), "same_response": r["same_response"],
                 "lm_eval_response": r["lm_eval_response"], "scorebench_response": r["scorebench_response"]}
                for r in rows if r["lm_eval"] != r["scorebench"]]
    return {
        "n": n,
        "lm_eval_acc": sum(r["lm_eval"] for r in rows) / n if n else None,
        "scorebench_acc_t1": sum(r["scorebench"] for r in rows) / n if n else None,
        "agree": n - len(disagree), "disagree": len(disagree),
        "only_lm_eval_correct": sum(r["lm_eval"] and not r["scorebench"] for r in rows),
        "only_scorebench_correct": sum(r["scorebench"] and not r["lm_eval"] for r in rows),
        "same_response": sum(r["same_response"] for r in rows),
        "disagree_ids": [r["id"] for r in disagree],
        "disagreements": disagree,
        "per_problem": [{"id": r["id"], "lm_eval": r["lm_eval"], "scorebench": r["scorebench"],
                         "same_response": r["same_response"]} for r in rows],
    }


def machine() -> dict:
    """``machine.describe()`` with the versions of the packages both harnesses run on."""
    return {**describe(), "versions": versions(("scorebench", "lm_eval", "torch", "transformers", "datasets"))}


def check(target: str, tasks: str = "scorebench_arith", limit: int | None = None, out: str | None = None,
          batch_size: int = 32, dtype: str = "float32", compute_dtype: str = "float32", device: str = "cpu",
          indices: list[int] | None = None, command: str | None = None) -> dict:
    """Run both harnesses on the same problems and write the files named in the module docstring; returns the
    comparison (also in ``out/comparison.json``). All input is checked before any model loads."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # everything is local: never wait on hub retries
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = task_names(tasks)
    if limit is not None and limit < 1:
        raise LmEvalUsageError(f"--limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise LmEvalUsageError(f"--batch-size must be >= 1, got {batch_size}")
    for flag, v, ok in (("--dtype", dtype, ("float32", "bfloat16", "float16")),
                        ("--compute-dtype", compute_dtype, ("auto", "float32", "bfloat16"))):
        if v not in ok:
            raise LmEvalUsageError(f"{flag} must be one of {', '.join(ok)}, got {v!r}")
    tgt = resolve_target(target, out)
    _check_out(tgt.out)
    _require_lm_eval()
    from .. import get_task
    run_cfg = (_run_config(tgt.run_dir).get("config") or {}) if tgt.run_dir else {}
    task_args = dict(run_cfg.get("task_args") or {})
    # Task arguments (a run's --task-arg) reach lm-eval's docs hook as metadata; a task takes only its own.
    sb_tasks = {n: get_task(LM_EVAL_TASKS[n], **(task_args if LM_EVAL_TASKS[n] == run_cfg.get("task") else {}))
                for n in names}

    tgt.out.mkdir(parents=True, exist_ok=True)
    from lm_eval.loggers import EvaluationTracker
    tracker = EvaluationTracker(output_path=str(tgt.out / "results.json"))
    t0, c0 = time.time(), time.process_time()
    res = run_lm_eval(tgt.model, names, limit=limit, indices=indices, batch_size=batch_size, dtype=dtype,
                      device=device, task_args=task_args, tracker=tracker)
    lm_seconds, lm_cpu = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    samples = save_lm_eval(res, tgt.out, tracker)

    report = {"target": str(target), "out": str(tgt.out), "model": tgt.label, "model_path": tgt.model,
              "command": command,
              "lm_eval": {"model_args": {"pretrained": tgt.model, "dtype": dtype}, "device": device,
                          "batch_size": batch_size, "apply_chat_template": True, "seconds": lm_seconds,
                          "cpu_seconds": lm_cpu},
              "machine": machine(), "tasks": {}}
    for n in names:
        task = sb_tasks[n]
        samples[n].sort(key=lambda s: s["doc_id"])
        ids = [str(s["doc"]["id"]) for s in samples[n]]
        max_new = int(res["configs"][n]["generation_kwargs"]["max_gen_toks"])
        eps, engine, why = (None, None, "not a run directory")
        if tgt.run_dir is not None:
            eps, engine, why = run_episodes(tgt.run_dir, task.name, task_args if task.name == run_cfg.get("task")
                                            else {}, ids, max_new)
        t1, c1 = time.time(), time.process_time()
        if eps is not None:
            source, sb_seconds, sb_cpu = f"{tgt.run_dir / 'episodes.jsonl'} (turn 1 of the run's episodes)", None, None
        else:
            by_id = {str(ex["id"]): ex for ex in task.test()}
            eps, engine = scorebench_turn1(tgt.model, task, [by_id[i] for i in ids], max_new, batch_size, dtype,
                                           compute_dtype, device)
            sb_seconds, sb_cpu = round(time.time() - t1, 1), round(time.process_time() - c1, 1)
            source = f"scorebench protocol, turns=1, temperature 0, run now ({why})" if tgt.run_dir else \
                "scorebench protocol, turns=1, temperature 0, run now"
        _write(tgt.out / f"episodes_{n}.jsonl", "".join(json.dumps(ep.to_json()) + "\n" for ep in eps))
        cmp = compare(task, samples[n], eps)
        cmp.update({"scorebench_task": task.name, "task": task.describe(), "max_new_tokens": max_new,
                    "scorebench_source": source, "scorebench_engine": engine, "scorebench_seconds": sb_seconds,
                    "scorebench_cpu_seconds": sb_cpu,
                    "lm_eval_acc_reported": res["results"][n].get("acc,none")})
        report["tasks"][n] = cmp
    _write(tgt.out / "comparison.json", json.dumps(report, indent=2, default=str))
    _write(tgt.out / "comparison.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Acc@t1: lm-evaluation-harness beside scorebench", ""]
    if report.get("command"):
        lines += ["```bash", report["command"], "```", ""]
    lm = report["lm_eval"]
    lines += [f"- model: `{report['model']}`",
              f"- lm-eval {m['versions'].get('lm_eval', '?')}: HF model (`generate`), "
              f"dtype {lm['model_args']['dtype']}, batch size {lm['batch_size']}, chat template, greedy; "
              f"{lm['seconds']} s wall, {lm.get('cpu_seconds', '?')} s CPU (model load included, one run for all "
              "tasks)",
              f"- machine: {m['platform']}, {m['processor']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads; "
              f"torch {m['versions'].get('torch', '?')}, transformers {m['versions'].get('transformers', '?')}", ""]
    lines += ["| task | problems | lm-eval acc | scorebench Acc@t1 | agree | disagree | identical responses "
              "| scorebench s (wall / CPU) |", "|---|---|---|---|---|---|---|---|"]
    for n, c in report["tasks"].items():
        sec = "-" if c["scorebench_seconds"] is None else f"{c['scorebench_seconds']} / {c['scorebench_cpu_seconds']}"
        lines.append(f"| {n} | {c['n']} | {100 * c['lm_eval_acc']:.1f} | {100 * c['scorebench_acc_t1']:.1f} | "
                     f"{c['agree']} | {c['disagree']} | {c['same_response']} | {sec} |")
    for n, c in report["tasks"].items():
        e = c.get("scorebench_engine") or {}
        lines += ["", f"## {n}", "",
                  f"- scorebench: {c['scorebench_source']}; engine {e.get('engine', '?')} "
                  f"({e.get('path', '?')} path, compute dtype {e.get('compute_dtype', '?')}); "
                  f"max_new_tokens {c['max_new_tokens']} in both",
                  f"- correct only under lm-eval: {c['only_lm_eval_correct']}; only under scorebench: "
                  f"{c['only_scorebench_correct']}; identical response text: {c['same_response']} of {c['n']}"]
        if c["disagreements"]:
            lines += ["", "| id | lm-eval | scorebench | lm-eval pred | scorebench pred | same text |",
                      "|---|---|---|---|---|---|"]
            for r in c["disagreements"]:
                lines.append(f"| {r['id']} | {int(r['lm_eval'])} | {int(r['scorebench'])} | {r['lm_eval_pred']} | "
                             f"{r['scorebench_pred']} | {r['same_response']} |")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
