"""``scorebench run``: resolve a config, train the method (if it trains), evaluate with the shared protocol, and
write the run directory. The data flows one way: task → protocol → engine → grader → records → metrics → table.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import metrics as M
from . import tables
from .engines import SamplingParams, get_engine
from .method import RunContext
from .protocol import run_protocol
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
    """Model dtype for sampling: float32, bfloat16 or float16."""
    limit: int | None = None
    """Evaluate on the first N test problems only."""
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

    def resolved(self) -> dict:
        """The config plus, for a method that trains, the content of its preset file (``method_args["preset"]``,
        default cpu-small) — editing a preset changes the results, so it must change the key too."""
        d = asdict(self)
        if METHODS.get(self.method).trains:
            from .training.config import load_preset
            d["preset_content"] = load_preset((self.method_args or {}).get("preset", "cpu-small"))
        return d

    def key(self) -> str:
        """A short hash of everything that changes results — names the default run directory."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()[:8]


def validate(cfg: RunConfig) -> None:
    TASKS.get(cfg.task)
    if cfg.train_task:
        TASKS.get(cfg.train_task)
    METHODS.get(cfg.method)
    ENGINES.get(cfg.engine)
    if cfg.turns < 1:
        raise ValueError(f"--turns must be >= 1, got {cfg.turns}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {cfg.limit}")
    if cfg.dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"--dtype must be float32, bfloat16 or float16, got {cfg.dtype!r}")
    if cfg.model is not None:
        from .models import resolve
        resolve(cfg.model)  # a missing local path fails here, before anything is written
    SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens or 1)


def default_out(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{cfg.task}-{cfg.key()}"


def run(cfg: RunConfig, out: str | Path | None = None, progress: bool = True) -> Path:
    validate(cfg)
    random.seed(cfg.seed)
    out = Path(out) if out else default_out(cfg)
    task = TASKS.get(cfg.task)(**cfg.task_args)
    method = METHODS.get(cfg.method)()
    max_new = cfg.max_new_tokens or task.max_new_tokens
    t0 = time.time()
    rd = RunDir(out)
    test = task.test()
    if cfg.limit:
        test = test[:cfg.limit]
    if _finished(rd, cfg, test):  # nothing to run: only recompute metrics (config.json stays as the run left it)
        finalize(rd)
        return out
    engine = get_engine(cfg.engine, model_name=cfg.model, dtype=cfg.dtype, batch_size=cfg.batch_size)
    resolved = cfg.resolved()
    record = {"config": asdict(cfg), "key": cfg.key(), "task": task.describe(), "max_new_tokens": max_new,
              "engine": engine.describe(), **environment()}
    if "preset_content" in resolved:
        record["preset_content"] = resolved["preset_content"]
    if task.kind == "code":
        from .sandbox import sandbox_kind
        record["sandbox"] = sandbox_kind()
    rd.init(record)

    done = {e.id for e in rd.episodes(repair=True)}
    todo = [ex for ex in test if str(ex["id"]) not in done]
    if method.trains:
        policy = rd.path / "policy"
        if not (policy / ".complete").exists():  # a finished policy is reused: training is never redone
            train_task = TASKS.get(cfg.train_task)(**cfg.task_args) if cfg.train_task else task
            t_train = time.time()
            policy = method.train(RunContext(config=cfg, task=train_task, engine=engine, run_dir=rd))
            rd.update_config(train_seconds=round(time.time() - t_train, 1))
        if policy is not None:
            engine = get_engine(cfg.engine, model_name=str(policy), dtype=cfg.dtype, batch_size=cfg.batch_size)

    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=max_new, seed=cfg.seed)
    if todo:
        run_protocol(engine, task, todo, params, protocol=method.protocol(cfg.turns), on_episodes=rd.append_episodes,
                     chunk_size=cfg.batch_size, progress=progress)
    finalize(rd)
    rd.update_config(total_seconds=round(time.time() - t0, 1))
    return out


def _finished(rd: RunDir, cfg: RunConfig, test: list[dict]) -> bool:
    """Does ``rd`` already hold this config's finished run (every test problem has its episode)? Such a run
    needs neither its policy weights (not shipped in results/) nor an engine."""
    if not rd.exists():
        return False
    old = rd.config()
    if old.get("config") != asdict(cfg) or old.get("key", cfg.key()) != cfg.key() or "total_seconds" not in old:
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

