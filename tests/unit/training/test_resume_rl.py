"""A SCoRe run killed after a checkpoint and run again reaches the same weights, rollouts and validation points
as one that was never interrupted, full fine-tuning and LoRA (issue 24: resume had no test in one process). Checked
to fail when the optimizer state is not restored on resume."""
import json
from types import SimpleNamespace

import pytest
import torch

from scorebench.engines.hf import HFEngine
from scorebench.method import RunContext
from scorebench.registry import METHODS
from scorebench.rundir import RunDir
from scorebench.training import trainer as trainer_mod


def _run(tmp_path, name, tiny_model_dir, coin_arith, lora=False):
    from scorebench import models
    model, tok = models.load(str(tiny_model_dir))
    engine = HFEngine(model=model, tokenizer=tok, compute_dtype="float32", batch_size=8)
    preset = tmp_path / f"{name}.json"
    preset.write_text(json.dumps({"lr": 5e-2, "batch_size": 4, "dtype": "float32", "temperature": 1.0,
                                  "val_problems": 2, "val_every": 1, "save_every": 1, "lora": lora, "lora_r": 2,
                                  "score": {"stage1_steps": 1, "stage2_steps": 2, "problems_per_step": 2,
                                            "samples_per_problem": 2, "max_new_tokens": 5}}))
    cfg = SimpleNamespace(method="score", seed=0, turns=2, max_new_tokens=None, batch_size=8,
                          model=str(tiny_model_dir), device="cpu", dtype="float32",
                          method_args={"preset": str(preset)})
    rd = RunDir(tmp_path / name)
    if not rd.path.exists():
        rd.path.mkdir()
        rd.init({"config": {"method": "score"}})
    return METHODS.get("score")().train(RunContext(config=cfg, task=coin_arith(n_train=20, n_test=2), engine=engine,
                                                   run_dir=rd)), rd


@pytest.mark.parametrize("lora", [False, pytest.param(True, marks=pytest.mark.full)])  # LoRA: make test-full
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tiny_model_dir, tmp_path, monkeypatch, coin_arith, lora):
    torch.set_num_threads(1)
    whole, rd_whole = _run(tmp_path, "whole", tiny_model_dir, coin_arith, lora)
    real = trainer_mod.Trainer.step
    calls = {"n": 0}

    def dies_at_third(self, *a, **k):  # killed during step 3, after the checkpoint of step 2
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)
    monkeypatch.setattr(trainer_mod.Trainer, "step", dies_at_third)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", tiny_model_dir, coin_arith, lora)
    monkeypatch.setattr(trainer_mod.Trainer, "step", real)
    resumed, rd = _run(tmp_path, "resumed", tiny_model_dir, coin_arith, lora)
    from safetensors.torch import load_file
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    moved = False
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
        moved = moved or (k in base and not torch.allclose(a[k], base[k]))
    assert moved
    for f in ("rollouts.jsonl", "val_log.jsonl", "val_episodes.jsonl", "train_log.jsonl"):
        steps = [json.loads(x)["step"] for x in (rd.path / "train" / f).read_text().splitlines()]
        want = [json.loads(x)["step"] for x in (rd_whole.path / "train" / f).read_text().splitlines()]
        assert steps == want, f
    drop = ("seconds",)
    va = [{k: v for k, v in json.loads(x).items() if k not in drop}
          for x in (rd.path / "train" / "val_log.jsonl").read_text().splitlines()]
    vb = [{k: v for k, v in json.loads(x).items() if k not in drop}
          for x in (rd_whole.path / "train" / "val_log.jsonl").read_text().splitlines()]
    assert va == vb
