"""Validation curves: the current policy, greedy, under the two-turn protocol, on a fixed split carved from the
train split — so a run shows when self-correction appears and what it costs the first attempt, and a
configuration can be chosen without looking at test numbers.

Why a carve, not a new split: only the train split exists for every task. The validation pool is a fixed set of
train problems (chosen by a hash of their ids, so it does not depend on the split's order or on any seed), and
training never sees it (``training_split``). Why greedy and fp32: the curve must change only when the policy
does, not with the sampler's noise or the thread count.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

from .. import dist
from ..engines.base import SamplingParams
from ..metrics import _point, correctness
from ..protocol import ProtocolConfig, run_protocol
from .checkpoint import drop_steps_after
from .memory import paged_out

VAL_POOL = 500
"""Train problems set aside for validation (at most a fifth of a small train split)."""
SELECTS = ("final", "best_val_delta")
VAL_FIELDS = ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i")


def _rank(example) -> str:
    return hashlib.sha256(str(example["id"]).encode()).hexdigest()


def pool_size(n_train: int) -> int:
    return min(VAL_POOL, n_train // 5)


def training_split(train: list[dict]) -> tuple[list[dict], list[dict]]:
    """(problems to train on, validation pool): the pool is the ``pool_size`` train problems whose id hashes
    lowest, in that order; the rest keep their order. Every method that trains draws from the first part only."""
    k = pool_size(len(train))
    pool = sorted(train, key=_rank)[:k]
    held = {str(ex["id"]) for ex in pool}
    return [ex for ex in train if str(ex["id"]) not in held], pool


def validation_points(n_steps: int, every: int) -> list[int]:
    """Steps after which the policy is validated: 0 (the starting policy), every ``every`` steps, and the end."""
    return sorted({0, n_steps, *range(every, n_steps, every)}) if every > 0 else [0, n_steps]


def auto_every(val_seconds: float, step_seconds: float, share: float = 0.2) -> int:
    """The validation interval that keeps validation at most ``share`` of training time: one validation of
    ``val_seconds`` per ``every`` steps of ``step_seconds``."""
    return max(1, math.ceil(val_seconds / (share * max(step_seconds, 1e-9))))


def episodes(ctx, problems: list[dict], max_new_tokens: int, seed: int = 0) -> list:
    """The policy the engine holds now, greedy, two turns, on ``problems``, in fp32 (the engine returns to the
    rollouts' compute dtype after). Every rank answers its share; all get every episode."""
    engine = ctx.engine
    switch = getattr(engine, "use_compute_dtype", lambda dtype: dtype)  # engines outside Engine keep their own
    before = getattr(engine, "compute_dtype", "float32")
    switch("float32")
    try:
        params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
        mine = dist.shard(problems)
        eps = run_protocol(engine, ctx.task, mine, params, ProtocolConfig(turns=2), progress=False,
                           chunk_size=max(1, len(mine))) if mine else []
    finally:
        switch(before)
    return [e for part in dist.gather(eps) for e in part]


def summarize(everyone: list) -> dict:
    """A validation point's numbers (``VAL_FIELDS``, n, and the share of attempts cut by the token cap)."""
    c = correctness(everyone)
    out = {k: v for k, v in _point(c).items() if k in VAL_FIELDS}
    out["n"] = len(everyone)
    out["cut_t1"] = sum(e.attempts[0].finish_reason == "length" for e in everyone) / max(1, len(everyone))
    out["cut_t2"] = sum(e.attempts[1].finish_reason == "length" for e in everyone) / max(1, len(everyone))
    return out


def evaluate(ctx, problems: list[dict], max_new_tokens: int, seed: int = 0) -> dict:
    """``summarize(episodes(...))``: the numbers of one validation point."""
    return summarize(episodes(ctx, problems, max_new_tokens, seed))


class Validator:
    """Validation during a training run: ``val_problems`` of the pool every ``val_every`` steps (0 = sized after
    the first step so validation takes at most a fifth of training time), lines in RUN/train/val_log.jsonl, and,
    with ``select="best_val_delta"``, the policy of the best validation Δ kept in RUN/train/best_policy. Each
    point's episodes go to RUN/train/val_episodes.jsonl (with their ``step``): what the policy said, not only how
    often it was right — a curve that falls can be read."""

    def __init__(self, ctx, tcfg, out_dir: Path, n_steps: int, max_new_tokens: int):
        self.ctx, self.n_steps, self.max_new = ctx, n_steps, max_new_tokens
        self.n, self.every, self.select = tcfg.val_problems, tcfg.val_every, tcfg.select
        self.log = Path(out_dir) / "val_log.jsonl"
        self.episodes_log = Path(out_dir) / "val_episodes.jsonl"
        self.best_dir = Path(out_dir) / "best_policy"
        self.problems = training_split(ctx.task.train())[1][:self.n]
        self._recordable = (Path(ctx.run_dir.path) / "config.json").exists()
        recorded = ctx.run_dir.config().get("val_every_resolved") if self._recordable else None
        if not self.every and recorded:
            self.every = recorded  # a resumed run keeps the interval it chose
        self._val_seconds = None
        self._rows: list[dict] | None = None

    @property
    def enabled(self) -> bool:
        return self.n > 0 and bool(self.problems)

    def rows(self) -> list[dict]:
        """The points logged so far: read once (rank 0's file, after a resume dropped redone steps), then kept in
        memory, so every rank of a multi-process run takes the same decisions."""
        if self._rows is None:
            mine = ([json.loads(x) for x in self.log.read_text(encoding="utf-8").splitlines() if x.strip()]
                    if dist.is_main() and self.log.exists() else [])
            self._rows = dist.gather(mine)[0]
        return self._rows

    def drop_steps_after(self, step: int) -> None:
        """After a resume from a checkpoint at ``step``: forget the points (and their episodes) of the steps that
        will be redone."""
        for path in (self.log, self.episodes_log):
            drop_steps_after(path, step)

    def due(self, step: int) -> bool:
        """Is the policy after ``step`` optimizer steps to be validated (and not yet)?"""
        if not self.enabled or any(r["step"] == step for r in self.rows()):
            return False
        if step in (0, self.n_steps):
            return True
        return bool(self.every) and step % self.every == 0

    def resolve_every(self, step_seconds: float) -> None:
        """Fix the automatic interval once, from the first validation's and the first step's wall times (rank 0's,
        so every rank validates at the same steps)."""
        if self.enabled and not self.every and self._val_seconds is not None:
            val_s, step_s = dist.gather((self._val_seconds, step_seconds))[0]
            self.every = auto_every(val_s, step_s)
            if self._recordable:
                self.ctx.run_dir.update_config(val_every_resolved=self.every)

    def __call__(self, step: int, trainer, force: bool = False) -> dict | None:
        """Validate the policy after ``step`` optimizer steps if due (``force``: whenever not yet logged — SFT's
        points per epoch); returns the logged row, or None."""
        if not (self.due(step) or (force and self.enabled and not any(r["step"] == step for r in self.rows()))):
            return None
        t0 = time.time()
        with paged_out(getattr(trainer, "optimizer", None)):  # the moments sit unused meanwhile: not resident
            eps = episodes(self.ctx, self.problems, self.max_new, seed=0)
        m = summarize(eps)
        self._val_seconds = time.time() - t0
        row = {"step": step, **m, "seconds": round(self._val_seconds, 1)}
        best = self.best()
        self._rows.append(row)
        if dist.is_main():
            drop_steps_after(self.episodes_log, step - 1)  # a point killed between its two writes left episodes
            with open(self.episodes_log, "a", encoding="utf-8") as f:  # first: a logged point has its episodes
                f.writelines(json.dumps({"step": step, **e.to_json()}) + "\n" for e in eps)
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        if self.select == "best_val_delta" and (best is None or m["delta"] > best["delta"]):
            trainer.save_policy(self.best_dir)  # every rank calls it; rank 0 writes
            if dist.is_main():
                (self.best_dir / "step.json").write_text(json.dumps({"step": step, "delta": m["delta"]}))
        return row

    def best(self) -> dict | None:
        """The validation point of the highest Δ (the earliest among equals)."""
        rows = self.rows()
        return max(rows, key=lambda r: (r["delta"], -r["step"])) if rows else None

    def save_test_policy(self, trainer, path: str | Path) -> Path:
        """Write the policy the test evaluates to ``path`` — the final one, or under ``select="best_val_delta"``
        the kept policy of the best validation Δ — and record its step in config.json (``test_policy_step``)."""
        path = Path(path)
        best = self.best()
        if self.select == "best_val_delta" and best is not None and (self.best_dir / ".complete").exists():
            step = best["step"]
            if dist.is_main():
                tmp = path.parent / f".tmp-{path.name}"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(self.best_dir, tmp)
                shutil.rmtree(path, ignore_errors=True)
                os.replace(tmp, path)
            dist.barrier()
        else:
            step = trainer.step_count
            trainer.save_policy(path)
        if self._recordable:
            self.ctx.run_dir.update_config(test_policy_step=step, select=self.select)
        return path


def plot_val_log(log_path: str | Path, out_png: str | Path) -> Path | None:
    """Validation Acc@t1, Acc@t2 and Δ (with i→c and c→i) by step."""
    rows = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()] if Path(log_path).exists() else []
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for k, lab in (("acc_t1", "Acc@t1"), ("acc_t2", "Acc@t2")):
        a.plot(xs, [100 * r[k] for r in rows], marker="o", label=lab)
    a.set_title(f"validation accuracy (n={rows[-1]['n']})")
    for k, lab in (("delta", "Δ"), ("delta_i2c", "Δ i→c"), ("delta_c2i", "Δ c→i")):
        b.plot(xs, [100 * r[k] for r in rows], marker="o", label=lab)
    b.axhline(0, color="grey", lw=0.5)
    b.set_title("validation Δ(t1, t2)")
    for ax in (a, b):
        ax.set_xlabel("step")
        ax.set_ylabel("%")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def last_point(run_dir: str | Path) -> dict:
    """The last validation point (highest step) of a run directory's ``train/val_log.jsonl``."""
    log = Path(run_dir) / "train" / "val_log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    if not rows:
        raise ValueError(f"{run_dir}: no validation points ({log})")
    return max(rows, key=lambda r: r["step"])


def beats(variant: dict, baseline: dict, min_gain: float = 0.01, max_t2_loss: float = 0.01) -> bool:
    """A study's choice rule (``results/study-arith.md``, written before any variant ran): ``variant``'s validation
    Δ is higher than ``baseline``'s by at least ``min_gain`` and its Acc@t2 lower by at most ``max_t2_loss``
    (fractions: 0.01 = one point). Rounded to 1e-9, so "exactly one point" counts on both sides."""
    gain = round(variant["delta"] - baseline["delta"], 9)
    t2_loss = round(baseline["acc_t2"] - variant["acc_t2"], 9)
    return gain >= min_gain and t2_loss <= max_t2_loss


def choose(baseline: dict, variants: dict[str, dict], min_gain: float = 0.01,
           max_t2_loss: float = 0.01) -> str | None:
    """The variant adopted by the rule: among those that beat ``baseline``, the highest validation Δ, then the
    higher Acc@t2 (then the first given); None when none beats it — the baseline stays."""
    winners = [(p["delta"], p["acc_t2"], -i, name) for i, (name, p) in enumerate(variants.items())
               if beats(p, baseline, min_gain, max_t2_loss)]
    return max(winners)[3] if winners else None
