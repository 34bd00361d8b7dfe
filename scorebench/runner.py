"""``scorebench run``: resolve a config, train the method (if it trains), evaluate with the shared protocol, and
write the run directory. The data flows one way: task → protocol → engine → grader → records → metrics → table.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from . import checks, device, dist, machine, models, sandbox, tables
from . import metrics as M
from .api.registry import ENGINES, METHODS, TASKS
from .api.types import SamplingParams
from .checks import UsageError
from .config import COMPUTE_DTYPES, DTYPES, LATER_FIELDS, RunConfig  # noqa: F401  (RunConfig: kept importable here)
from .context import HarnessContext
from .engines import get_engine
from .rundir import RunDir, environment
from .training import plan as training_plan


@dataclass
class Plan:
    """What the validation pass found, so that the run does not build it twice."""
    out: Path
    task: object
    train_task: object
    test: list
    finished: bool
    """``out`` already holds this config's finished run (reused as it is: no model needed)."""
    training: dict | None = None
    """What training will do and cost (``training/plan.py``), for a method that trains."""


def validate(cfg: RunConfig, out: str | Path | None = None, writable: bool = True) -> Plan:
    """Check everything the user chose before any model loads or any file is written (``UsageError`` and the
    registry's, model's and run directory's one-line errors). ``writable=False`` skips the checks that ``out`` can
    be written here and that the run fits in this machine's free memory (``reproduce --dry-run`` prints commands
    to run elsewhere)."""
    task_cls = TASKS.get(cfg.task)
    train_cls = TASKS.get(cfg.train_task) if cfg.train_task else None
    method = METHODS.get(cfg.method)()
    engine_cls = ENGINES.get(cfg.engine)
    checks.at_least(cfg.turns, 1, "--turns")
    checks.at_least(cfg.limit, 1, "--limit")
    checks.at_least(cfg.batch_size, 1, "--batch-size")
    checks.at_least(cfg.max_new_tokens, 1, "--max-new-tokens")
    checks.one_of(cfg.dtype, DTYPES, "--dtype")
    checks.one_of(cfg.compute_dtype, COMPUTE_DTYPES, "--compute-dtype")
    device.resolve(cfg.device)  # "cuda" where there is none: one line, before anything loads
    if cfg.compute_dtype != "auto" and "compute_dtype" not in inspect.signature(engine_cls).parameters:
        raise UsageError(f"--compute-dtype: engine {cfg.engine!r} has no separate compute dtype (it computes in "
                         "--dtype)")
    SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens or 1)
    task = _task(task_cls, cfg)
    test = task.test()[:cfg.limit] if cfg.limit else task.test()
    if not test:
        raise UsageError(f"task {cfg.task!r} has no test problems with these --task-arg values")
    train_task = None
    if method.trains:
        train_task = _task(train_cls, cfg) if train_cls else task
        try:
            train_task.train()
        except NotImplementedError as e:
            raise UsageError(f"method {cfg.method!r} trains, but {e}; pass --train-task") from None
    elif cfg.train_task:
        raise UsageError(f"--train-task: method {cfg.method!r} does not train")
    checks.method_args(cfg, method)
    training = _training_plan(cfg, method, train_task) if method.trains else None
    out = Path(out) if out else default_out(cfg)
    if writable:
        checks.output_dir(out)
    RunDir(out).check({"config": cfg.record(), "key": cfg.key()})
    finished = _finished(RunDir(out), cfg, test)
    if not finished:  # a finished run is reused without its model (run directories ship without weights)
        models.check(cfg.model)
    free = _free_gb() if training and not finished and writable else None
    if free is not None and training.get("expected", {}).get("peak_gb", 0) > free:
        raise UsageError(f"{training['line']} This machine has {free:.1f} GB free: the "
                         "run would not fit in memory (fewer side-by-side jobs, or a smaller micro_batch_size)")
    return Plan(out=out, task=task, train_task=train_task, test=test, finished=finished, training=training)


def _free_gb() -> float | None:
    return training_plan.available_gb()


def _training_plan(cfg: RunConfig, method, train_task) -> dict | None:
    """The method's plan (``Method.plan``) with the expected wall time and memory, and the line to print."""
    import torch  # in a function, like every torch import on the way to a usage error: it takes seconds
    p = method.plan(HarnessContext(config=cfg, task=train_task, engine=None, run_dir=None))
    if not p:
        return None
    exp = training_plan.expected(p, p.get("dtype", ""), cfg.model is None, device.resolve(cfg.device) == "cpu",
                                 torch.get_num_threads())
    return {**p, "expected": exp, "line": training_plan.line(cfg.method, p, exp)}


def _task(cls, cfg: RunConfig):
    """An instance of ``cls`` with the run's ``--task-arg`` values, checked against its constructor first."""
    checks.constructor_args(cls, cfg.task_args, f"task {cls.name!r}", "--task-arg")
    try:
        return cls(**cfg.task_args)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--task-arg: {e}") from None


def default_out(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{cfg.task}-{cfg.key()}"


def engine_for(cfg: RunConfig, model: str | None):
    """The run's engine on ``model``; ``compute_dtype`` goes only to an engine that takes it."""
    kw = {"model_name": model, "dtype": cfg.dtype, "batch_size": cfg.batch_size}
    params = inspect.signature(ENGINES.get(cfg.engine)).parameters
    if "compute_dtype" in params:
        kw["compute_dtype"] = cfg.compute_dtype
    if "device" in params:
        kw["device"] = device.resolve(cfg.device)
    return get_engine(cfg.engine, **kw)


def run(cfg: RunConfig, out: str | Path | None = None, progress: bool = True) -> Path:
    """Validate, then — holding the run directory's lock — reuse, resume or start the run.

    Launched as N processes (``accelerate launch`` / ``torchrun``), the N processes are one run
    (``scorebench.dist``): rank 0 holds the lock and writes; every rank trains on and evaluates its share."""
    plan = validate(cfg, out)
    if plan.training and not plan.finished and progress and dist.is_main():
        print(plan.training["line"], file=sys.stderr, flush=True)
    dist.init(device.resolve(cfg.device))
    random.seed(cfg.seed)
    rd = RunDir(plan.out)
    created = not plan.out.exists()
    with rd.lock() if dist.is_main() else contextlib.nullcontext():
        try:
            _run_locked(cfg, plan, rd, progress)
        except BaseException:
            if created and dist.is_main() and not any(plan.out.iterdir()):
                plan.out.rmdir()  # failed before writing anything (say, the engine is unavailable): leave no trace
            raise
    return plan.out


def _run_locked(cfg: RunConfig, plan: Plan, rd: RunDir, progress: bool) -> None:
    task, test, method = plan.task, plan.test, METHODS.get(cfg.method)()
    max_new = cfg.max_new_tokens or task.max_new_tokens
    t0 = time.time()
    if dist.gather(_finished(rd, cfg, test))[0]:  # rank 0 decides; nothing to run: only recompute metrics
        if dist.is_main():
            finalize(rd)  # config.json stays as the run left it
        dist.barrier()
        return
    engine = engine_for(cfg, cfg.model)
    resolved = cfg.resolved()
    record = {"config": cfg.record(), "key": cfg.key(), "task": task.describe(), "max_new_tokens": max_new,
              "n_problems": len(test), "engine": engine.describe(), **environment()}
    if "preset_content" in resolved:
        record["preset_content"] = resolved["preset_content"]
    if task.kind == "code":
        record["sandbox"] = sandbox.sandbox_kind()
    rd.init(record)
    if dist.is_main():
        rd.episodes(repair=True)  # cut a half-written last line before any rank reads
    dist.barrier()

    done = {e.id for e in rd.episodes()}
    todo = [ex for ex in test if str(ex["id"]) not in done]
    if method.trains:
        policy = rd.path / "policy"
        if not (policy / ".complete").exists():  # a finished policy is reused: training is never redone
            t_train = time.time()
            policy = method.train(HarnessContext(config=cfg, task=plan.train_task, engine=engine, run_dir=rd))
            rd.record_seconds(train_seconds=round(time.time() - t_train, 1))
        if policy is not None:
            # The training engine, and the trainer (its model, AdamW's moments, the reference: held in reference
            # cycles until a collection), off the test evaluation's peak, and their freed heap back to the OS: a
            # tiny SCoRe run held 3.5 GB after training, 1.2 GB after this; a cpu-learn run's test 3.2 GB, was 5.3.
            engine = None
            gc.collect()
            device.trim_heap()
            engine = engine_for(cfg, str(policy))

    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=max_new, seed=cfg.seed)
    if todo:  # chunks of batch_size dealt to the ranks; rank 0 appends each round's episodes as they arrive
        bar = tqdm(total=len(todo), desc=f"{task.name}: episodes", unit="problem",
                   disable=not (progress and dist.is_main()))
        with checks.no_trace_of_broken_plugin(rd, method, had_episodes=bool(done), bar=bar):
            dist.rollout(lambda chunk: checks.rollout_episodes(cfg.method, method, chunk, cfg.turns, method.rollout(
                engine, task, chunk, params, cfg.turns, chunk_size=len(chunk), progress=False)),
                todo, cfg.batch_size, on_episodes=rd.append_episodes, bar=bar)
        bar.close()
    if dist.is_main():
        finalize(rd)
    rd.record_seconds(total_seconds=round(time.time() - t0, 1), peak_rss_gb=machine.rss_gb(peak=True))
    dist.barrier()  # every rank returns only once the run directory is complete


def _finished(rd: RunDir, cfg: RunConfig, test: list[dict]) -> bool:
    """Does ``rd`` already hold this config's finished run (every test problem has its episode)? Such a run
    needs neither its policy weights (not shipped in results/) nor an engine."""
    if not rd.exists() or not rd.path.is_dir():
        return False
    old = rd.config()
    if old.get("config") != cfg.record() or old.get("key", cfg.key()) != cfg.key() or "total_seconds" not in old:
        return False
    done = {e.id for e in rd.episodes()}
    return all(str(ex["id"]) in done for ex in test)


def finalize(rd: RunDir) -> dict:
    """Recompute metrics.json and table.md from episodes.jsonl."""
    cfg = rd.config()
    m = M.compute(rd.episodes(), seed=cfg["config"].get("seed", 0))
    rd.write_metrics(m)
    method, task = tables.row_label(cfg)
    rd.write_text("table.md", tables.table([(method, task, m)]))
    return m

