"""``pair-sft`` / ``pair-sft+``: Pair-SFT (Welleck et al. 2023) as the SCoRe paper uses it.

For each train problem draw several first attempts; pair a wrong sample with a right sample of the same problem
into a synthetic two-turn trace (turn 1 = the wrong attempt, the task's correction instruction, turn 2 = the right
attempt) = D_SFT; ``pair-sft+`` also pairs right with right = D+_SFT. SFT on the turn-2 tokens. Off-policy: the
second attempt was never generated in the context of the first.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from scorebench.api import Method
from scorebench.seeding import derive_seed
from scorebench.protocol import Episode, ProtocolConfig, Turn, problem_id

from scorebench.training import episode_to_sequences, resolve_method_config
from scorebench.training.config import check_number
from scorebench.training.sft import (finish, is_right, read_dataset, sample_traces, sampling_params, sft, subset,
                                     untrained_policy, write_dataset)


@dataclass
class PairConfig:
    n_problems: int | None = None
    """Train problems to sample (a seeded random subset); None = the whole train split."""
    samples_per_problem: int = 4
    """First attempts drawn per problem."""
    max_pairs_per_problem: int | None = 1
    """Cap on pairs of each kind per problem (None = one per wrong / right sample)."""
    max_new_tokens: int | None = None
    """Tokens per attempt while sampling; None = the task's default."""

    def __post_init__(self):
        check_number("n_problems", self.n_problems, integer=True, ge=1, optional=True)
        check_number("samples_per_problem", self.samples_per_problem, integer=True, ge=2)  # a pair needs two
        check_number("max_pairs_per_problem", self.max_pairs_per_problem, integer=True, ge=1, optional=True)
        check_number("max_new_tokens", self.max_new_tokens, integer=True, ge=1, optional=True)


def make_pairs(episodes_by_problem: dict[str, list[Episode]], plus: bool, rng: random.Random,
               max_pairs_per_problem: int | None = None) -> list[tuple[str, Turn, Turn, str]]:
    """(problem id, first turn, second turn, kind) pairs; kind "wrong->right" or (with ``plus``) "right->right".

    Every wrong first attempt is paired with a random right one of the same problem; with ``plus`` every right
    attempt with a *different* right sample — a right attempt that is its problem's only one is skipped, since a
    sample paired with itself teaches copying, not correcting. ``max_pairs_per_problem`` caps each kind.
    """
    out = []
    for pid in sorted(episodes_by_problem):
        firsts = [ep.turns[0] for ep in episodes_by_problem[pid]]
        right = [t for t in firsts if is_right(t.reward)]
        wrong = [t for t in firsts if not is_right(t.reward)]
        if not right:
            continue
        kinds = [("wrong->right", wrong)] + ([("right->right", right if len(right) > 1 else [])] if plus else [])
        for kind, group in kinds:
            chosen = list(group)
            if max_pairs_per_problem is not None and len(chosen) > max_pairs_per_problem:
                chosen = rng.sample(chosen, max_pairs_per_problem)
            for first in chosen:
                partners = [t for t in right if t is not first]
                out.append((pid, first, rng.choice(partners), kind))
    return out


def pair_episode(pid: str, first: Turn, second: Turn, instruction: str, k: int = 0) -> Episode:
    """The synthetic trace: the problem, the first attempt, the correction instruction, the second attempt."""
    t1 = Turn(prompt=first.prompt, response=first.response, reward=first.reward, prompt_ids=first.prompt_ids,
              response_ids=first.response_ids)
    # The second attempt was sampled in another context: its prompt ids are None, so training renders the
    # context the chat template gives at test time after this first attempt (training/sequences.py).
    t2 = Turn(prompt=instruction, response=second.response, reward=second.reward, response_ids=second.response_ids)
    return Episode(id=f"{pid}~{k}", turns=[t1, t2])


class PairSFTMethod(Method):
    description = "Pair-SFT D_SFT: SFT on synthetic wrong -> right pairs of first attempts"
    trains = True
    plus = False

    def method_config(self, ctx):
        return resolve_method_config(ctx, PairConfig, ["pair-sft", "pair-sft+"] if self.plus else ["pair-sft"])

    def train(self, ctx):
        mcfg, tcfg = self.method_config(ctx)
        rd = ctx.run_dir.path
        model, tok = ctx.trainable_model()
        seqs = read_dataset(rd)
        if seqs is None:
            problems = subset(ctx.train_examples(), mcfg.n_problems, derive_seed(tcfg.seed, "problems"))
            params = sampling_params(ctx, tcfg, mcfg.max_new_tokens, seed=derive_seed(tcfg.seed, "samples"))
            eps = sample_traces(ctx, problems, params, ProtocolConfig(turns=1), mcfg.samples_per_problem)
            by_problem = defaultdict(list)
            for ep in eps:
                by_problem[problem_id(ep.id)].append(ep)
            pairs = make_pairs(by_problem, self.plus, random.Random(derive_seed(tcfg.seed, "pairs")),
                               mcfg.max_pairs_per_problem)
            instruction = self.protocol(ctx.config.turns).instruction or ctx.task.correction_instruction
            rows = []
            for k, (pid, first, second, kind) in enumerate(pairs):
                ep = pair_episode(pid, first, second, instruction, k)
                rows += [(ep, kind, s) for s in episode_to_sequences(tok, ep, [0.0, 1.0])]
            n_right = sum(is_right(e.rewards[0]) for e in eps)
            stats = {"problems": len(problems), "samples": len(eps), "samples_right": n_right,
                     "problems_with_right": sum(any(is_right(e.rewards[0]) for e in v) for v in by_problem.values()),
                     "kept": dict(Counter(k for _, k, _ in rows)), "n": len(rows),
                     "wrong->right": sum(1 for _, k, _ in rows if k == "wrong->right"),
                     "right->right": sum(1 for _, k, _ in rows if k == "right->right"),
                     "acc_t1": n_right / max(1, len(eps))}
            write_dataset(rd, rows, stats)
            seqs = [s for _, _, s in rows]
        if not seqs:
            return untrained_policy(ctx, "no pairs could be built (see dataset_stats.json)")
        trainer = sft(ctx, model, tok, tcfg, seqs, "train")
        return finish(trainer, rd / "policy")


class PairSFTPlusMethod(PairSFTMethod):
    description = "Pair-SFT D+_SFT: wrong -> right pairs plus right -> right pairs"
    plus = True
