"""``star`` / ``star+``: STaR (Zelikman et al. 2022) adapted to self-correction, as in the SCoRe paper.

Sample two-attempt traces from the current model on the task's train split, keep the successful revisions
(y1 wrong, y2 right) = D_StaR — ``star+`` also keeps correct->correct traces = D+_StaR — and SFT on the turn-2
tokens only (the sampled tokens themselves). ``iterations`` > 1 repeats sample -> filter -> SFT from the
current model.

Also home of the SFT plumbing Pair-SFT shares: dataset files in the run directory and the SFT call.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass

from scorebench import dist
from scorebench.engines import SamplingParams
from scorebench.method import Method
from scorebench.metrics import is_correct
from scorebench.seeding import derive_seed
from scorebench.protocol import Episode, run_protocol
from scorebench.rundir import write_json
from scorebench.training import Sequence, Trainer, episode_to_sequences, resolve_method_config
from scorebench.training.config import check_number
from scorebench.training.validation import Validator, plot_val_log


@dataclass
class StarConfig:
    iterations: int = 1
    """Rounds of sample -> filter -> SFT."""
    n_problems: int | None = None
    """Train problems sampled per iteration (a seeded random subset); None = the whole train split."""
    samples_per_problem: int = 1
    """Two-attempt traces drawn per problem."""
    max_new_tokens: int | None = None
    """Tokens per attempt while sampling data; None = the task's default."""

    def __post_init__(self):
        check_number("iterations", self.iterations, integer=True, ge=1)
        check_number("n_problems", self.n_problems, integer=True, ge=1, optional=True)
        check_number("samples_per_problem", self.samples_per_problem, integer=True, ge=1)
        check_number("max_new_tokens", self.max_new_tokens, integer=True, ge=1, optional=True)


def is_right(reward) -> bool:
    return bool(is_correct(reward))


def trace_type(ep: Episode) -> str:
    """"i->c", "c->c", "c->i" or "i->i" from the first and last graded attempts."""
    r = ep.rewards
    return f"{'c' if is_right(r[0]) else 'i'}->{'c' if is_right(r[-1]) else 'i'}"


def filter_star(episodes: list[Episode], plus: bool) -> list[tuple[Episode, str]]:
    """D_StaR: the traces whose first attempt is wrong and last is right; with ``plus`` also right->right."""
    keep = ("i->c", "c->c") if plus else ("i->c",)
    out = []
    for ep in episodes:
        if len(ep.attempts) < 2:
            continue
        t = trace_type(ep)
        if t in keep:
            out.append((ep, t))
    return out


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
    import shutil
    val = getattr(trainer, "validator", None)
    out = val.save_test_policy(trainer, path) if val is not None else trainer.save_policy(path)
    if dist.is_main():
        shutil.rmtree(trainer.ckpt_dir, ignore_errors=True)
    return out


def untrained_policy(ctx, reason: str):
    """An empty dataset is a result, not a crash: warn, record it, and return the unchanged model as the policy
    (the row then measures the base model, which is what training on nothing gives)."""
    import warnings
    from pathlib import Path
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


def turn2_weights(ep: Episode) -> list[float]:
    """SFT weight 1 on the last graded attempt only."""
    n = len(ep.attempts)
    return [0.0] * (n - 1) + [1.0]


class StarMethod(Method):
    description = "STaR D_StaR: SFT on self-generated successful revisions (wrong -> right)"
    trains = True
    plus = False

    def train(self, ctx):
        sections = ["star", "star+"] if self.plus else ["star"]
        mcfg, tcfg = resolve_method_config(ctx, StarConfig, sections)
        rd = ctx.run_dir.path
        model, tok = ctx.trainable_model()
        trainer = None
        for it in range(mcfg.iterations):
            suffix = "" if it == 0 else f"-it{it}"
            seqs = read_dataset(rd, suffix)
            if seqs is None:
                problems = subset(ctx.train_examples(), mcfg.n_problems, derive_seed(tcfg.seed, "problems", it))
                params = sampling_params(ctx, tcfg, mcfg.max_new_tokens, seed=derive_seed(tcfg.seed, "samples", it))
                eps = sample_traces(ctx, problems, params, self.protocol(ctx.config.turns), mcfg.samples_per_problem)
                kept = filter_star(eps, plus=self.plus)
                rows = [(ep, kind, s) for ep, kind in kept for s in episode_to_sequences(tok, ep, turn2_weights(ep))]
                counts = Counter(trace_type(ep) for ep in eps if len(ep.attempts) >= 2)
                stats = {"iteration": it, "problems": len(problems), "episodes": len(eps),
                         "sampled": dict(counts), "kept": dict(Counter(k for _, k, _ in rows)), "n": len(rows),
                         "i->c": sum(1 for _, k, _ in rows if k == "i->c"),
                         "c->c": sum(1 for _, k, _ in rows if k == "c->c"),
                         "acc_t1": sum(is_right(e.rewards[0]) for e in eps) / max(1, len(eps)),
                         "acc_t2": sum(is_right(e.rewards[-1]) for e in eps) / max(1, len(eps))}
                write_dataset(rd, rows, stats, suffix)
                seqs = [s for _, _, s in rows]
            if not seqs:
                if trainer is None:
                    return untrained_policy(ctx, "no traces survived filtering (see dataset_stats.json)")
                break  # a later iteration found nothing new: keep the policy trained so far
            trainer = sft(ctx, model, tok, tcfg, seqs, "train" + suffix)
            if it + 1 < mcfg.iterations:
                # the next round samples from, and fine-tunes, the current weights (LoRA merged in first)
                model = trainer.model.merge_and_unload() if tcfg.lora else trainer.model
                ctx.sync_policy(model)
        return finish(trainer, rd / "policy")


class StarPlusMethod(StarMethod):
    description = "STaR D+_StaR: SFT on successful revisions plus correct -> correct traces"
    plus = True
