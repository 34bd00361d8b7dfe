"""Inference-compute scaling: parallel sampling with majority voting vs sequential self-correction with voting
over the final attempts, at equal sample budgets (the paper's Figure on compute scaling).

For a budget of B samples per problem: *parallel* draws B independent first attempts and votes over their
answers; *sequential* spends the same B samples on B // 2 independent two-turn chains (2 samples each) and votes
over the chains' final attempts, plus, when B is odd, the first attempt of one more chain (so at B = 1 both arms
are one first attempt: budgets are always equal). Both sets of episodes are written to the output directory, and the curve is recomputed
from them — like every other figure, it is computed from records, never typed.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from .engines import SamplingParams
from .metrics import is_correct
from .protocol import Episode, ProtocolConfig, problem_id, run_protocol
from .rundir import RunDir, environment, write_json


def vote(attempts: list) -> float:
    """Reward of the majority answer among ``attempts`` (Turns with ``info['pred']``); ties go to the earliest.
    Attempts without an extracted answer do not vote; none at all scores 0."""
    preds = [(repr(t.info.get("pred")), t) for t in attempts if t.info.get("pred") is not None]
    if not preds:
        return 0.0
    top, _ = Counter(p for p, _ in preds).most_common(1)[0]
    return float(is_correct(next(t.reward for p, t in preds if p == top)))


def curve(parallel: list[Episode], sequential: list[Episode], budgets: list[int]) -> dict:
    def group(eps):
        g: dict[str, list[Episode]] = {}
        for e in eps:
            g.setdefault(problem_id(e.id), []).append(e)
        return g
    par, seq = group(parallel), group(sequential)
    out = {"budgets": budgets, "parallel": [], "sequential": []}
    for b in budgets:
        out["parallel"].append(sum(vote([e.attempts[0] for e in es[:b]]) for es in par.values()) / len(par))
        out["sequential"].append(sum(vote(sequential_votes(es, b)) for es in seq.values()) / len(seq))
    return out


def sequential_votes(chains: list[Episode], budget: int) -> list:
    """The attempts the sequential arm votes over at ``budget`` samples: the final attempts of budget // 2
    chains, and the first attempt of one more chain when the budget is odd — exactly ``budget`` samples."""
    full = budget // 2
    votes = [e.attempts[-1] for e in chains[:full]]
    if budget % 2:
        votes.append(chains[full].attempts[0])
    return votes


def run_scaling(engine, task, examples: list[dict], budgets: list[int], out: Path, temperature: float = 1.0,
                max_new_tokens: int | None = None, seed: int = 0) -> dict:
    if task.kind != "math":
        raise ValueError("scaling needs a task with extracted answers to vote on (a math-kind task)")
    if any(b < 1 for b in budgets):
        raise ValueError("budgets must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"config": {"task": task.name, "budgets": budgets, "temperature": temperature,
                                                "n": len(examples), "seed": seed}, "engine": engine.describe(),
                                     **environment()})
    bmax = max(budgets)
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens or task.max_new_tokens,
                            n=bmax, seed=seed)
    t0 = time.time()
    par = run_protocol(engine, task, examples, params, ProtocolConfig(turns=1), samples_per_problem=bmax)
    chains = (bmax + 1) // 2
    seq = run_protocol(engine, task, examples, SamplingParams(**{**params.__dict__, "n": chains}),
                       ProtocolConfig(turns=2), samples_per_problem=chains)
    for name, eps in (("parallel", par), ("sequential", seq)):
        (out / f"{name}_episodes.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in eps))
    result = curve(par, seq, budgets)
    result["seconds"] = round(time.time() - t0, 1)
    write_json(out / "scaling.json", result)
    plot(out)
    return result


def load(out: Path) -> tuple[list[Episode], list[Episode], list[int]]:
    out = Path(out)
    cfg = RunDir(out).config()["config"]
    read = lambda n: [Episode.from_json(json.loads(x)) for x in (out / f"{n}_episodes.jsonl").read_text().splitlines() if x]  # noqa: E731
    return read("parallel"), read("sequential"), cfg["budgets"]


def plot(out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    par, seq, budgets = load(out)
    c = curve(par, seq, budgets)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(budgets, [100 * v for v in c["parallel"]], "o-", label="parallel sampling + majority vote")
    ax.plot(budgets, [100 * v for v in c["sequential"]], "s-", label="sequential self-correction + vote")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    from .plots import _save
    return _save(fig, Path(out) / "scaling")
