"""``star`` / ``star+``: STaR (Zelikman et al. 2022) adapted to self-correction, as in the SCoRe paper.

Sample two-attempt traces from the current model on the task's train split, keep the successful revisions
(y1 wrong, y2 right) = D_StaR — ``star+`` also keeps correct->correct traces = D+_StaR — and SFT on the turn-2
tokens only (the sampled tokens themselves). ``iterations`` > 1 repeats sample -> filter -> SFT from the
current model. Sampling, the dataset files and the SFT call are ``training/sft.py``'s.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from scorebench.api import Method
from scorebench.seeding import derive_seed
from scorebench.protocol import Episode
from scorebench.training import episode_to_sequences, resolve_method_config
from scorebench.training.config import check_number
from scorebench.training.sft import (finish, is_right, read_dataset, sample_traces, sampling_params, sft, subset,
                                     untrained_policy, write_dataset)


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


def turn2_weights(ep: Episode) -> list[float]:
    """SFT weight 1 on the last graded attempt only."""
    n = len(ep.attempts)
    return [0.0] * (n - 1) + [1.0]


class StarMethod(Method):
    description = "STaR D_StaR: SFT on self-generated successful revisions (wrong -> right)"
    trains = True
    plus = False

    def method_config(self, ctx):
        return resolve_method_config(ctx, StarConfig, ["star", "star+"] if self.plus else ["star"])

    def train(self, ctx):
        mcfg, tcfg = self.method_config(ctx)
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
