"""SFT data plumbing shared by the SFT baselines (STaR, Pair-SFT): sample traces on train problems, keep a dataset
of weighted token sequences in the run directory (resumable), SFT the policy on it, and save the result.

A method on top of it only chooses which traces to keep and with what per-turn weights (``baselines/star.py``,
``baselines/pair_sft.py``); the on-policy RL loop is the other half of shared training (``training/rl.py``).
"""
from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

from .. import dist
from ..engines.base import SamplingParams
from ..metrics import is_correct
from ..protocol import Episode, run_protocol
from ..rundir import write_json
from .sequences import Sequence
from .trainer import Trainer
from .validation import Validator, plot_val_log


def is_right(reward) -> bool:
    return bool(is_correct(reward))


def subset(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if not n or n >= len(examples):
        return list(examples)
    return random.Random(seed).sample(examples, n)


def sampling_params(ctx, train_cfg, max_new_tokens, seed: int) -> SamplingParams:
    max_new = max_new_tokens or ctx.config.max_new_tokens or getattr(ctx.task, "max_new_tokens", 256)
    return SamplingParams(temperature=train_cfg.temperature, top_p=1.0, max_new_tokens=max_new, seed=seed)


def sample_traces(ctx, problems: list[dict], params, protocol, samples_per_problem: int,
                  chunk_size: int = 64) -> list[Episode]:
    """Sample the protocol on ``problems`` with the engine's token ids kept for training. In a multi-process run
    each rank samples its chunks and every rank gets every episode, in the order one process would produce."""
    from tqdm.auto import tqdm
    bar = tqdm(total=len(problems), desc=f"{ctx.task.name}: episodes", unit="problem", disable=not dist.is_main())
    eps = dist.rollout(lambda chunk: run_protocol(ctx.engine, ctx.task, chunk, params, protocol=protocol,
                                                  samples_per_problem=samples_per_problem, keep_ids=True,
                                                  chunk_size=len(chunk), progress=False),
                       problems, chunk_size, bar=bar)
    bar.close()
    return eps


def write_dataset(path_dir, rows: list[tuple[Episode, str, Sequence]], stats: dict, suffix: str = "") -> None:
    """``dataset{suffix}.jsonl`` (one trace per line: type, turns, token ids, weights) then
    ``dataset_stats{suffix}.json`` — the stats file is written last and marks the dataset complete. Rank 0
    only (every rank holds the same rows)."""
    if not dist.is_main():
        return
    with open(path_dir / f"dataset{suffix}.jsonl", "w", encoding="utf-8") as f:
        for ep, kind, seq in rows:
            f.write(json.dumps({"id": ep.id, "type": kind, "turns": ep.to_json()["turns"], **seq.to_json()},
                               ensure_ascii=False) + "\n")
    write_json(path_dir / f"dataset_stats{suffix}.json", stats)


def read_dataset(path_dir, suffix: str = "") -> list[Sequence] | None:
    """The sequences of a completed dataset in the run directory, or None (resume support)."""
    if not (path_dir / f"dataset_stats{suffix}.json").exists():
        return None
    lines = (path_dir / f"dataset{suffix}.jsonl").read_text(encoding="utf-8").splitlines()
    return [Sequence.from_json(json.loads(x)) for x in lines if x.strip()]


def sft(ctx, model, tok, train_cfg, sequences: list[Sequence], name: str) -> Trainer:
    """SFT ``model`` on ``sequences`` with a Trainer in ``run_dir/name`` (resumes from its checkpoints)."""
    trainer = Trainer(model, tok, train_cfg, ctx.run_dir.path / name, ref_model=False)
    if (ctx.run_dir.path / "config.json").exists():  # record where and in what it trained
        ctx.run_dir.update_config(train_device=str(trainer.accelerator.device),
                                  train_dtype=train_cfg.resolved_dtype(trainer.accelerator.device.type))
    val = Validator(ctx, train_cfg, trainer.out_dir, 0, ctx.config.max_new_tokens or ctx.task.max_new_tokens)
    trainer.validator = val  # validation points before training and after every epoch (train/val_log.jsonl)
    trainer.fit(sequences, desc=f"{ctx.config.method}: sft",
                validate=(lambda step: (ctx.sync_policy(trainer.model), val(step, trainer, force=True)))
                if val.enabled else None)
    if dist.is_main():
        trainer.plot(ctx.run_dir.path / f"{name}.png")
        if val.enabled:
            plot_val_log(val.log, trainer.out_dir / "val_curves.png")
    return trainer


def finish(trainer: Trainer, path):
    """Save the merged policy, then drop the training checkpoints (about 3x the model in size): once
    ``policy/.complete`` exists the runner never resumes training."""
    val = getattr(trainer, "validator", None)
    out = val.save_test_policy(trainer, path) if val is not None else trainer.save_policy(path)
    if dist.is_main():
        shutil.rmtree(trainer.ckpt_dir, ignore_errors=True)
    return out


def untrained_policy(ctx, reason: str):
    """An empty dataset is a result, not a crash: warn, record it, and return the unchanged model as the policy
    (the row then measures the base model, which is what training on nothing gives)."""
    warnings.warn(f"{ctx.config.method}: {reason}; the policy is the untrained model")
    ctx.run_dir.update_config(untrained=reason)
    path = Path(ctx.run_dir.path) / "policy"
    model, tok = ctx.trainable_model()
    if dist.is_main():
        model.save_pretrained(path)
        tok.save_pretrained(path)
        (path / ".complete").write_text("untrained: " + reason)
    dist.barrier()  # every rank then loads it
    return path
