"""Two groups of runs that differ in one setting, compared over their training seeds.

    python scripts/seed_contrast.py RUN_A1 RUN_A2 ... -- RUN_B1 RUN_B2 ... [--metric delta]
    python scripts/seed_contrast.py RUN_1 RUN_2 ...                          (one group: its mean and t interval)

Why this beside ``scorebench table --seed-mean``: that table's CI (``metrics.seed_mean``) resamples seeds and
problems, which with three seeds has only ten distinct seed multisets. A comparison of two settings written down
before its runs (results/study-arith.md, nineteenth session) asked for the textbook reading instead: each group's
mean test metric over seeds with a Student-t 95% interval, and Welch's 95% interval for the difference of the
means. Each run's number is the project's own (``results.recompute`` of its episodes)."""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scorebench.results import recompute  # noqa: E402


def t_interval(x: np.ndarray) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def welch(a: np.ndarray, b: np.ndarray) -> dict:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    d = float(a.mean() - b.mean())
    return {"difference": d, "ci95": [d - half, d + half], "df": float(df)}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    metric = "delta"
    if "--metric" in argv:
        i = argv.index("--metric")
        metric, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if "--" in argv:
        cut = argv.index("--")
        groups = [argv[:cut], argv[cut + 1:]]
    else:
        groups = [argv]
    if min(len(g) for g in groups) < 2:
        sys.exit("seed_contrast: each group needs two or more runs")
    out = {"metric": metric, "groups": []}
    values = []
    for g in groups:
        x = np.array([100 * recompute(r)[metric] for r in g])
        values.append(x)
        out["groups"].append({"runs": [Path(r).name for r in g], "per_seed": x.round(2).tolist(),
                              "mean": round(float(x.mean()), 2), "t_ci95": [round(v, 2) for v in t_interval(x)]})
    if len(values) == 2:
        w = welch(*values)
        out["a_minus_b"] = {"difference": round(w["difference"], 2), "welch_ci95": [round(v, 2) for v in w["ci95"]],
                            "df": round(w["df"], 2)}
    everything = np.concatenate(values)
    out["all"] = {"n": len(everything), "mean": round(float(everything.mean()), 2),
                  "t_ci95": [round(v, 2) for v in t_interval(everything)]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
