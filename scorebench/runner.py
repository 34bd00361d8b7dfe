"""``scorebench run``: resolve a config, train the method (if it trains), evaluate with the shared protocol, and
write the run directory. The data flows one way: task → protocol → engine → grader → records → metrics → table.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import checks, dist
from . import metrics as M
from . import tables
from .checks import UsageError
from .engines import SamplingParams, get_engine
from .method import RunContext
from .registry import ENGINES, METHODS, TASKS
from .rundir import RunDir, environment


@dataclass
class RunConfig:
    method: str = "base"
    """Registered method name (``scorebench methods``)."""
    task: str = "arith"
    """Registered task name (``scorebench tasks``)."""
    train_task: str | None = None
    """Task whose train split trained methods use; None = ``task`` (the paper trains on MBPP for HumanEval)."""
    model: str | None = None
    """HF model id or local directory; None = the embedded SmolLM2-135M-Instruct."""
    engine: str = "hf"
    """Sampling engine: ``hf`` (CPU/GPU, transformers) or ``vllm`` (GPU only)."""
    dtype: str = "float32"
    """Dtype the model's weights are loaded in: float32, bfloat16 or float16."""
    limit: int | None = None
    """Evaluate on the first N test problems; None = all. Bounds evaluation only, not training (the line printed
    before training says how big it is)."""
    turns: int = 2
    """Attempts per problem (K >= 1); the paper uses 2."""
    temperature: float = 0.0
    """Evaluation sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Evaluation nucleus mass."""
    max_new_tokens: int | None = None
    """Tokens per attempt; None = the task's default."""
    seed: int = 0
    """Seed for sampling, bootstrap and training data order."""
    batch_size: int = 32
    """Conversations per engine batch."""
    task_args: dict = field(default_factory=dict)
    """Keyword arguments for the task constructor (e.g. arith difficulty)."""
    method_args: dict = field(default_factory=dict)
    """Method hyperparameters (see each method's config)."""
    device: str = "auto"
    """Where to compute: auto (CUDA when available), cpu or cuda. config.json records where the weights were."""
    compute_dtype: str = "auto"
    """Dtype the HF engine's fast path computes evaluation in: auto (the weights' dtype: fp32 by default, exact and
    the same on every CPU and thread count), float32 or bfloat16 (faster on CPUs with AMX; its greedy episodes
    change with the thread count). Training rollouts compute in the trainer's dtype whatever this says."""
    rules: int = 2
    """Version of the rules that decide results without a flag of their own (not a CLI flag): 1 = runs before
    strict grading and exact CPU evaluation (cut attempts graded on their text, bf16 CPU compute by default);
    2 = strict grading and fp32 CPU evaluation by default. Part of the key, so a run of other rules is never
    reused as this config's."""

    def record(self) -> dict:
        """The config as ``config.json`` records it and the key hashes it: every field, except one added after
        runs were shipped while it holds the value those runs used (``LATER_FIELDS``) — so they keep their keys
        and are still found and reused."""
        d = asdict(self)
        for k, v in LATER_FIELDS.items():
            if d.get(k) == v:
                del d[k]
        return d

    def resolved(self) -> dict:
        """The config plus, for a method that trains, the content of its preset file (``method_args["preset"]``,
        default cpu-small) — editing a preset changes the results, so it must change the key too."""
        d = self.record()
        if METHODS.get(self.method).trains:
            from .training.config import load_preset
            d["preset_content"] = load_preset((self.method_args or {}).get("preset", "cpu-small"))
        return d

    def key(self) -> str:
        """A short hash of everything that changes results — names the default run directory."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()[:8]


LATER_FIELDS = {"compute_dtype": "auto", "device": "auto", "rules": 1}
"""Fields added after runs were recorded, with the value those runs used: left out of the record at that value."""

DTYPES = ("float32", "bfloat16", "float16")
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


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
    registry's, model's and run directory's one-line errors). ``writable=False`` skips the check that ``out`` can
    be written here (``reproduce --dry-run`` prints commands to run elsewhere)."""
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
    from .device import resolve as resolve_device
    resolve_device(cfg.device)  # "cuda" where there is none: one line, before anything loads
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
        from . import models
        models.check(cfg.model)
    free = _free_gb() if training and not finished else None
    if free is not None and training.get("expected", {}).get("peak_gb", 0) > free:
        raise UsageError(f"{training['line']} This machine has {free:.1f} GB free: the "
                         "run would not fit in memory (fewer side-by-side jobs, or a smaller micro_batch_size)")
    return Plan(out=out, task=task, train_task=train_task, test=test, finished=finished, training=training)


def _free_gb() -> float | None:
    from .training.plan import available_gb
    return available_gb()


def _training_plan(cfg: RunConfig, method, train_task) -> dict | None:
    """The method's plan (``Method.plan``) with the expected wall time and memory, and the line to print."""
    import torch

    from .device import resolve
    from .training import plan as training_plan
    p = method.plan(RunContext(config=cfg, task=train_task, engine=None, run_dir=None))
    if not p:
        return None
    exp = training_plan.expected(p, p.get("dtype", ""), cfg.model is None, resolve(cfg.device) == "cpu",
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
    from .device import resolve
    kw = {"model_name": model, "dtype": cfg.dtype, "batch_size": cfg.batch_size}
    params = inspect.signature(ENGINES.get(cfg.engine)).parameters
    if "compute_dtype" in params:
        kw["compute_dtype"] = cfg.compute_dtype
    if "device" in params:
        kw["device"] = resolve(cfg.device)
    return get_engine(cfg.engine, **kw)


def run(cfg: RunConfig, out: str | Path | None = None, progress: bool = True) -> Path:
    """Validate, then — holding the run directory's lock — reuse, resume or start the run.

    Launched as N processes (``accelerate launch`` / ``torchrun``), the N processes are one run
    (``scorebench.dist``): rank 0 holds the lock and writes; every rank trains on and evaluates its share."""
    plan = validate(cfg, out)
    if plan.training and not plan.finished and progress and dist.is_main():
        import sys
        print(plan.training["line"], file=sys.stderr, flush=True)
    from .device import resolve
    dist.init(resolve(cfg.device))
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
        from .sandbox import sandbox_kind
        record["sandbox"] = sandbox_kind()
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
            policy = method.train(RunContext(config=cfg, task=plan.train_task, engine=engine, run_dir=rd))
            rd.update_config(train_seconds=round(time.time() - t_train, 1))
        if policy is not None:
            engine = engine_for(cfg, str(policy))

    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=max_new, seed=cfg.seed)
    if todo:  # chunks of batch_size dealt to the ranks; rank 0 appends each round's episodes as they arrive
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc=f"{task.name}: episodes", unit="problem",
                   disable=not (progress and dist.is_main()))
        with checks.no_trace_of_broken_plugin(rd, method, had_episodes=bool(done), bar=bar):
            dist.rollout(lambda chunk: checks.rollout_episodes(cfg.method, method, chunk, cfg.turns, method.rollout(
                engine, task, chunk, params, cfg.turns, chunk_size=len(chunk), progress=False)),
                todo, cfg.batch_size, on_episodes=rd.append_episodes, bar=bar)
        bar.close()
    if dist.is_main():
        finalize(rd)
    rd.update_config(total_seconds=round(time.time() - t0, 1))
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

