"""Figures from run directories (PNG + PDF): per-turn accuracy with CIs, the edit-distance distribution (the
paper's behavior-collapse diagnostic), training curves and validation curves. Nothing here reads anything but run
directories."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import metrics as M  # noqa: E402
from .rundir import RunDir  # noqa: E402
from .tables import row_label  # noqa: E402


def _save(fig, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for p in paths:  # no creation date in the PDF: figures regenerate byte for byte from the same run dirs
        fig.savefig(p, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def label_of(run: Path) -> str:
    return RunDir(run).config()["config"]["method"]


def labels_of(runs: list[Path]) -> list[str]:
    """Default labels: "method (task)", so runs of one method on two tasks are told apart; runs that share both
    (variants of one method) are labelled by their directory name instead, as ``scorebench table`` does."""
    pairs = [row_label(RunDir(r).config()) for r in runs]
    return [Path(r).name if pairs.count(p) > 1 else f"{p[0]} ({p[1]})" for r, p in zip(runs, pairs)]


def accuracy_bars(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[Path]:
    labels = labels or labels_of(runs)
    ms = [M.compute(RunDir(r).episodes()) for r in runs]
    turns = min(m.get("turns", 1) for m in ms)
    x = np.arange(len(runs))
    width = 0.8 / turns
    fig, ax = plt.subplots(figsize=(1.6 * len(runs) + 2, 3.5))
    for k in range(turns):
        key = f"acc_t{k + 1}"
        vals = np.array([100 * m[key] for m in ms])
        lo = vals - np.array([100 * m["ci95"][key][0] for m in ms])
        hi = np.array([100 * m["ci95"][key][1] for m in ms]) - vals
        ax.bar(x + (k - (turns - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=3, label=f"Acc@t{k + 1}")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Per-turn accuracy (95% paired-bootstrap CI)")
    ax.legend()
    return _save(fig, out)


def edit_distance_hist(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[Path]:
    labels = labels or labels_of(runs)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 21)
    for r, lab in zip(runs, labels):
        eps = RunDir(r).episodes()
        ratios = [M.edit_distance_ratio(e.attempts[0].response, e.attempts[1].response)
                  for e in eps if len(e.attempts) >= 2]
        if ratios:
            ax.hist(ratios, bins=bins, histtype="step", density=True, linewidth=1.5, label=lab)
    ax.set_xlabel("edit-distance ratio between attempt 1 and attempt 2 (0 = identical)")
    ax.set_ylabel("density")
    ax.set_title("Behavior collapse shows as mass near 0")
    ax.legend(fontsize=8)
    return _save(fig, out)


CURVES = [("reward_t1", "reward t1"), ("reward_t2", "reward t2"), ("i2c", "i→c rate"), ("c2i", "c→i rate"),
          ("kl", "KL to reference"), ("edit_ratio", "edit ratio"), ("loss", "loss")]


def read_log(run: Path, name: str = "train_log.jsonl") -> list[dict]:
    """A run's ``train/<name>`` lines by step (``val_log.jsonl``: its validation points)."""
    path = Path(run) / "train" / name
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            by_step[d["step"]] = d  # a resumed run may log a step twice; the last one stands
    return [by_step[s] for s in sorted(by_step)]


def training_curves(runs: list[Path], out: Path, labels: list[str] | None = None, smooth: int = 5) -> list[Path]:
    labels = labels or labels_of(runs)
    logs = [read_log(r) for r in runs]
    keys = [(k, t) for k, t in CURVES if any(k in d for log in logs for d in log)]
    if not keys:
        return []
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, (k, title) in zip(axes[0], keys):
        for log, lab in zip(logs, labels):
            pts = [(d["step"], d[k]) for d in log if k in d]
            if not pts:
                continue
            s, v = map(np.array, zip(*pts))
            if smooth > 1 and len(v) >= smooth:
                v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
                s = s[smooth - 1:]
            ax.plot(s, v, label=lab)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    return _save(fig, out)


VAL_CURVES = [("acc_t1", "validation Acc@t1"), ("acc_t2", "validation Acc@t2"), ("delta", "validation Δ(t1, t2)")]


def validation_curves(runs: list[Path], out: Path, labels: list[str] | None = None) -> list[Path]:
    """Validation Acc@t1, Acc@t2 and Δ by step, one line per run (``train/val_log.jsonl``): when
    self-correction appears across seeds, and what it costs the first attempt. Points, not smoothed."""
    labels = labels or labels_of(runs)
    logs = [read_log(r, "val_log.jsonl") for r in runs]
    if not any(logs):
        return []
    fig, axes = plt.subplots(1, len(VAL_CURVES), figsize=(3.6 * len(VAL_CURVES), 3), squeeze=False)
    for ax, (k, title) in zip(axes[0], VAL_CURVES):
        for log, lab in zip(logs, labels):
            if log:
                ax.plot([d["step"] for d in log], [100 * d[k] for d in log], marker="o", ms=3, label=lab)
        if k == "delta":
            ax.axhline(0, color="grey", lw=0.5)
        n = sorted({d["n"] for log in logs for d in log})
        ax.set_title(f"{title}, n={'/'.join(map(str, n))}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("%")
    axes[0][0].legend(fontsize=7)
    return _save(fig, out)


def all_figures(runs: list[Path], out_dir: Path, labels: list[str] | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    paths = accuracy_bars(runs, out_dir / "accuracy", labels)
    paths += edit_distance_hist(runs, out_dir / "edit_distance", labels)
    paths += training_curves(runs, out_dir / "training_curves", labels)
    paths += validation_curves(runs, out_dir / "validation_curves", labels)
    return paths
