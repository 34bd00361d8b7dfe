"""Does a run's validation say what its test will? Per finished training run: the validation metric at the step
that was evaluated on test (``config.json``'s ``test_policy_step``; 200 held-out *train* problems) against the
test metric (``results.recompute`` of its episodes), and over the runs Pearson's r with a Fisher-z 95% interval
and Spearman's rho.

    python scripts/val_vs_test.py RUN... [--metric delta] [--plot out.png] [--best-of K]

Why: the study found that SCoRe's self-correction appears in some runs of one configuration and not in others
(results/study-arith.md). A researcher choosing runs or steps on validation (never on test) needs to know that
validation tells the two kinds apart; this measures how well, from the run directories alone. ``--best-of K``
adds what that buys: over every K of the runs, the test metric of the one with the best validation metric (ties:
their mean), averaged, beside the plain mean (a run picked at random).
Runs without a validation point at that step, or unfinished, are listed under ``skipped`` with the reason."""
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scorebench.plots import read_log  # noqa: E402
from scorebench.results import recompute  # noqa: E402
from scorebench.rundir import RunDir  # noqa: E402


def pair(run: str, metric: str) -> tuple[dict | None, str]:
    """(the run's row, "") or (None, why it is skipped)."""
    rec = RunDir(run).config()
    if "total_seconds" not in rec:
        return None, "unfinished"
    step = rec.get("test_policy_step")
    points = {p["step"]: p for p in read_log(Path(run), "val_log.jsonl")}  # a resumed step: its last line
    if step is None or not points:
        return None, "no validation log or test_policy_step"
    if step not in points:
        return None, f"no validation point at step {step}"
    test = recompute(run)
    if metric not in test or metric not in points[step]:
        return None, f"no {metric}"
    return {"run": run, "step": step, "val": 100 * points[step][metric], "n_val": points[step].get("n"),
            "test": 100 * test[metric], "n_test": test.get("n")}, ""


def correlation(val: np.ndarray, test: np.ndarray) -> dict:
    """Pearson's r with its Fisher-z 95% interval (needs ≥ 4 runs) and Spearman's rho."""
    r = float(np.corrcoef(val, test)[0, 1])
    half = 1.959964 / np.sqrt(len(val) - 3)
    z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    return {"n_runs": len(val), "pearson_r": r, "pearson_ci95": [float(np.tanh(z - half)), float(np.tanh(z + half))],
            "spearman_rho": float(stats.spearmanr(val, test).statistic)}


def best_of(val: np.ndarray, test: np.ndarray, k: int) -> float:
    """Mean over all k-subsets of the runs of the test value of the subset's best-validation run (tied best: the
    mean of their test values) — what training k seeds and keeping the one validation prefers gives on average."""
    picks = []
    for idx in itertools.combinations(range(len(val)), k):
        v = val[list(idx)]
        picks.append(float(test[list(idx)][v == v.max()].mean()))
    return float(np.mean(picks))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = {"--metric": "delta", "--plot": None, "--best-of": None}
    for flag in opts:
        if flag in argv:
            i = argv.index(flag)
            opts[flag], argv = argv[i + 1], argv[:i] + argv[i + 2:]
    metric, plot = opts["--metric"], opts["--plot"]
    rows, skipped = [], {}
    for run in argv:
        row, why = pair(run, metric)
        if row:
            rows.append(row)
        else:
            skipped[run] = why
    if len(rows) < 4:
        print(f"val_vs_test: {len(rows)} usable runs; a correlation needs at least 4 (skipped: {skipped})",
              file=sys.stderr)
        return 2
    val, test = np.array([r["val"] for r in rows]), np.array([r["test"] for r in rows])
    out = {"metric": metric, **correlation(val, test), "runs": rows, "skipped": skipped}
    if opts["--best-of"]:
        k = int(opts["--best-of"])
        out["best_of"] = {"k": k, "test_of_best_validation": best_of(val, test, k), "test_mean": float(test.mean())}
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.scatter(val, test, s=18)
        lim = [min(val.min(), test.min()) - 1, max(val.max(), test.max()) + 1]
        ax.plot(lim, lim, lw=0.8, color="grey", label="y = x")
        ax.set_xlabel(f"validation {metric} (points, step tested)")
        ax.set_ylabel(f"test {metric} (points)")
        ax.set_title(f"{len(rows)} runs: r = {out['pearson_r']:.2f}")
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
