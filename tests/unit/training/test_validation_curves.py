"""Validation curves: a fixed pool carved from the train split, never trained on; greedy two-turn points in
train/val_log.jsonl at step 0, every val_every steps and the end; select=best_val_delta; the automatic interval."""
import json
import os
from types import SimpleNamespace

import pytest

from scorebench.engines.hf import HFEngine
from scorebench.method import RunContext
from scorebench.protocol import problem_id
from scorebench.registry import METHODS
from scorebench.rundir import RunDir
from scorebench.tasks.arith import Arith
from scorebench.training.validation import auto_every, training_split, validation_points


def test_pool_is_fixed_disjoint_and_order_free():
    train = Arith(n_train=100, n_test=5).train()
    rest, pool = training_split(train)
    assert len(pool) == 20 and len(rest) == 80
    assert not {e["id"] for e in rest} & {e["id"] for e in pool}
    assert [e["id"] for e in rest] == [e["id"] for e in train if e not in pool]  # order kept
    rest2, pool2 = training_split(list(reversed(train)))
    assert [e["id"] for e in pool2] == [e["id"] for e in pool]
    assert training_split(Arith(n_train=5000, n_test=5).train())[1].__len__() == 500


def test_points_and_auto_interval():
    assert validation_points(10, 4) == [0, 4, 8, 10]
    assert validation_points(8, 0) == [0, 8]
    assert auto_every(val_seconds=30, step_seconds=100) == 2   # 30 / 2 steps of 100 s = 15% <= 20%
    assert auto_every(val_seconds=10, step_seconds=100) == 1
    assert auto_every(val_seconds=100, step_seconds=100) == 5


def _ctx(tmp_path, tiny_model_dir, select, val_every=1):
    from scorebench import models
    model, tok = models.load(str(tiny_model_dir))
    engine = HFEngine(model=model, tokenizer=tok, compute_dtype="float32", batch_size=8)
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"lr": 5e-2, "batch_size": 4, "dtype": "float32", "temperature": 1.0,
                                  "val_problems": 3, "val_every": val_every, "select": select,
                                  "score": {"stage1_steps": 1, "stage2_steps": 2, "problems_per_step": 2,
                                            "samples_per_problem": 2, "max_new_tokens": 6}}))
    cfg = SimpleNamespace(method="score", seed=0, turns=2, max_new_tokens=None, batch_size=8,
                          model=str(tiny_model_dir), device="cpu", dtype="float32",
                          method_args={"preset": str(preset)})
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    rd.init({"config": {"method": "score"}})
    return RunContext(config=cfg, task=Arith(n_train=20, n_test=2), engine=engine, run_dir=rd), rd


@pytest.mark.parametrize("select", ["final", "best_val_delta"])
def test_score_writes_validation_points_and_records_the_tested_step(tiny_model_dir, tmp_path, select):
    ctx, rd = _ctx(tmp_path, tiny_model_dir, select)
    policy = METHODS.get("score")().train(ctx)
    rows = [json.loads(x) for x in (rd.path / "train" / "val_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["n"] == 3 and set(r) >= {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"}
        assert r["delta"] == pytest.approx(r["acc_t2"] - r["acc_t1"])
        assert r["delta"] == pytest.approx(r["delta_i2c"] - r["delta_c2i"])
    # validation problems are never trained on
    pool = {e["id"] for e in training_split(ctx.task.train())[1]}
    trained = {problem_id(json.loads(x)["id"]) for x in (rd.path / "train" / "rollouts.jsonl").read_text().splitlines()}
    assert trained and not trained & pool
    conf = rd.config()
    best = max(rows, key=lambda r: (r["delta"], -r["step"]))["step"]
    assert conf["test_policy_step"] == (3 if select == "final" else best) and conf["select"] == select
    assert json.loads((policy / ".complete").read_text())["step"] == conf["test_policy_step"]
    assert (rd.path / "train" / "val_curves.png").exists()
    assert conf["rollout_compute_dtype"] == "float32"
    # every point's episodes, from which its numbers recompute exactly
    from scorebench.protocol import Episode
    from scorebench.training.validation import summarize
    lines = [json.loads(x) for x in (rd.path / "train" / "val_episodes.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [s for s in (0, 1, 2, 3) for _ in range(3)]
    for r in rows:
        eps = [Episode.from_json(ln) for ln in lines if ln["step"] == r["step"]]
        assert {problem_id(e.id) for e in eps} <= pool
        assert summarize(eps) == {k: v for k, v in r.items() if k not in ("step", "seconds")}


def test_validation_evaluates_in_fp32_and_restores_the_rollout_dtype(tiny_model_dir, tmp_path):
    from scorebench.training.validation import evaluate
    ctx, _ = _ctx(tmp_path, tiny_model_dir, "final")
    seen = []
    real = ctx.engine.generate

    def spy(convs, params, desc=None):
        seen.append((ctx.engine.compute_dtype, params.temperature))
        return real(convs, params, desc)
    ctx.engine.use_compute_dtype("bfloat16")
    ctx.engine.generate = spy
    m = evaluate(ctx, training_split(ctx.task.train())[1][:2], max_new_tokens=4)
    assert m["n"] == 2 and seen == [("float32", 0.0), ("float32", 0.0)]
    assert ctx.engine.compute_dtype == "bfloat16"


def test_choice_rule_on_hand_made_points(tmp_path):
    """The study's rule at its edges: +1.0 point of Δ with 1.0 point of Acc@t2 lost is a win, 0.5 less is not, and
    among winners the higher Δ, then the higher Acc@t2, is adopted; read from the last point of a val_log."""
    from scorebench.training.validation import beats, choose, last_point
    base = {"delta": 0.045, "acc_t2": 0.685}
    edge = {"delta": 0.055, "acc_t2": 0.675}            # +1.0 Δ, −1.0 Acc@t2: beats
    short = {"delta": 0.050, "acc_t2": 0.900}           # +0.5 Δ: does not
    costly = {"delta": 0.200, "acc_t2": 0.670}          # +15.5 Δ but −1.5 Acc@t2: does not
    high = {"delta": 0.080, "acc_t2": 0.600 + 0.080}    # +3.5 Δ, −0.5 Acc@t2: beats
    tie = {"delta": 0.080, "acc_t2": 0.690}             # same Δ as ``high``, higher Acc@t2
    assert beats(edge, base) and not beats(short, base) and not beats(costly, base) and beats(high, base)
    assert choose(base, {"short": short, "costly": costly}) is None
    assert choose(base, {"edge": edge, "high": high}) == "high"
    assert choose(base, {"high": high, "tie": tie, "edge": edge}) == "tie"
    run = tmp_path / "r"
    (run / "train").mkdir(parents=True)
    (run / "train" / "val_log.jsonl").write_text("".join(json.dumps({"step": s, **base, "delta": d}) + "\n"
                                                         for s, d in ((0, 0.1), (32, 0.02), (16, 0.3))))
    assert last_point(run)["step"] == 32 and last_point(run)["delta"] == 0.02
    with pytest.raises(ValueError):
        last_point(tmp_path)


def test_validation_runs_with_the_moments_paged_out_and_trains_as_without(tiny_model_dir, tmp_path, monkeypatch):
    """During a run's validation the optimizer's moment blocks are out of memory (their pages read as zeros), and
    the run trains bit for bit as one that kept them resident (both runs' moments are overwritten with the same
    non-zero values before each point: the tiny model's rewards are all 0, so its own moments stay 0)."""
    import contextlib

    import torch

    from scorebench.training import memory, validation

    def run(sub, page):
        box, seen = {}, []
        real_call, real_episodes = validation.Validator.__call__, validation.episodes

        def call(self, step, trainer, force=False):
            box["trainer"] = trainer
            for i, blk in enumerate(memory.moment_blocks(trainer.optimizer)):  # the tiny run's are zeros: mark them
                blk.copy_(torch.linspace(0.5, 1.0, blk.numel()) * (step + i + 1) * 1e-3)
            return real_call(self, step, trainer, force)

        def spy(*a, **k):
            blocks = memory.moment_blocks(box["trainer"].optimizer)
            seen.append([(b.numel(), int(b.count_nonzero())) for b in blocks])
            return real_episodes(*a, **k)
        with monkeypatch.context() as m:
            m.setattr(validation.Validator, "__call__", call)
            m.setattr(validation, "episodes", spy)
            if not page:
                m.setattr(validation, "paged_out", lambda opt: contextlib.nullcontext())
            ctx, _ = _ctx(tmp_path / sub, tiny_model_dir, "final")
            METHODS.get("score")().train(ctx)
        return box["trainer"], seen

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, seen_a = run("a", True)
    b, seen_b = run("b", False)
    assert seen_a[0] == [] and len(seen_a) == 4  # step 0: no moments yet
    end_pages = 2 * os.sysconf("SC_PAGE_SIZE") // 4  # fp32 elements on a block's two partial end pages, at most
    assert all(len(s) == 2 and all(nz <= end_pages for _, nz in s) for s in seen_a[1:])
    assert all(len(s) == 2 and all(nz == n for n, nz in s) for s in seen_b[1:])  # every marked value still there
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.equal(p, q), n
