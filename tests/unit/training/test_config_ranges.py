"""Method arguments and preset values are checked for range, not only type (issue 23, item 1): a value out of
range is one line naming the argument and where it came from, exit 2, before any model loads and with nothing
written. (SCoRe's own fields are checked in methods/score.py; here: TrainConfig, STaR's and Pair-SFT's.)"""
import dataclasses
import json
import math

import pytest

from scorebench.baselines.pair_sft import PairConfig
from scorebench.baselines.star import StarConfig
from scorebench.cli import main
from scorebench.training.config import TrainConfig


def one_line_error(args, capsys, where):
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (where / "o").exists() and not any((where / "runs").iterdir())
    return err


RUN = ["run", "--task", "arith", "--limit", "2", "--out", "o"]


@pytest.mark.parametrize("method,arg,needle", [
    ("star", "lr=abc", "--method-arg lr expects a number, got 'abc'"),
    ("score", "lr=abc", "--method-arg lr expects a number, got 'abc'"),
    ("star", "lr=-1", "--method-arg lr must be a number > 0, got -1"),
    ("pair-sft", "lr=0", "--method-arg lr must be a number > 0, got 0"),
    ("score", "lr=0", "--method-arg lr must be a number > 0, got 0"),
    ("star", "batch_size=0", "--method-arg batch_size must be an integer >= 1, got 0"),
    ("star", "micro_batch_size=0", "--method-arg micro_batch_size must be an integer >= 1 (or null), got 0"),
    ("star", "micro_batch_tokens=-8", "micro_batch_tokens must be an integer >= 1 (or null), got -8"),
    ("star", "grad_accum=0", "--method-arg grad_accum must be an integer >= 1, got 0"),
    ("star", "steps=0", "--method-arg steps must be an integer >= 1, got 0"),
    ("star", "steps=2.5", "--method-arg steps must be an integer >= 1, got 2.5"),
    ("star", "epochs=0", "--method-arg epochs must be a number > 0, got 0"),
    ("star", "warmup_steps=-1", "--method-arg warmup_steps must be an integer >= 0, got -1"),
    ("star", "weight_decay=-0.1", "--method-arg weight_decay must be a number >= 0, got -0.1"),
    ("star", "betas=[0.9,1.5]", "--method-arg betas[1] must be a number in [0, 1), got 1.5"),
    ("star", "betas=[0.9]", "--method-arg betas must be two numbers in [0, 1)"),
    ("star", "max_grad_norm=big", "--method-arg max_grad_norm expects a number, got 'big'"),
    ("star", "lora_r=0", "--method-arg lora_r must be an integer >= 1, got 0"),
    ("star", "lora_alpha=0", "--method-arg lora_alpha must be a number > 0, got 0"),
    ("star", "lora_dropout=1.5", "--method-arg lora_dropout must be a number in [0, 1), got 1.5"),
    ("star", "lora=maybe", "--method-arg lora expects true or false, got 'maybe'"),
    ("star", "lora=2", "--method-arg lora must be true or false, got 2"),
    ("star", "lora_target_modules=[]", "--method-arg lora_target_modules must be a non-empty list"),
    ("star", "save_every=-1", "--method-arg save_every must be an integer >= 0, got -1"),
    ("star", "log_every=0", "--method-arg log_every must be an integer >= 1, got 0"),
    ("star", "temperature=0", "--method-arg temperature must be a number > 0, got 0"),
    ("score", "temperature=-1", "--method-arg temperature must be a number > 0, got -1"),
    ("star", "seed=x", "--method-arg seed expects an integer, got 'x'"),
    ("score", "val_problems=-1", "--method-arg val_problems must be an integer >= 0, got -1"),
    ("score", "val_every=1.5", "--method-arg val_every must be an integer >= 0, got 1.5"),
    ("star", "iterations=0", "--method-arg iterations must be an integer >= 1, got 0"),
    ("star+", "n_problems=0", "--method-arg n_problems must be an integer >= 1 (or null), got 0"),
    ("star", "samples_per_problem=0", "--method-arg samples_per_problem must be an integer >= 1, got 0"),
    ("star", "max_new_tokens=0", "--method-arg max_new_tokens must be an integer >= 1 (or null), got 0"),
    ("pair-sft", "samples_per_problem=1", "--method-arg samples_per_problem must be an integer >= 2, got 1"),
    ("pair-sft+", "max_pairs_per_problem=0", "max_pairs_per_problem must be an integer >= 1 (or null), got 0"),
    ("pair-sft", "n_problems=-3", "--method-arg n_problems must be an integer >= 1 (or null), got -3"),
])
def test_method_arg_out_of_range_is_one_line_naming_it(method, arg, needle, no_model, capsys):
    err = one_line_error(RUN + ["--method", method, "--method-arg", arg], capsys, no_model)
    assert f"method {method!r}" in err and needle in err, err


@pytest.mark.parametrize("content,needle", [
    ({"lr": -1e-5}, "lr must be a number > 0, got -1e-05"),
    ({"lr": "fast"}, "lr expects a number, got 'fast'"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"star": {"iterations": -1}}, "iterations must be an integer >= 1, got -1"),
    ({"temperature": 0}, "temperature must be a number > 0, got 0"),
])
def test_preset_out_of_range_is_one_line_naming_the_preset(content, needle, no_model, capsys):
    (no_model / "p.json").write_text(json.dumps(content))
    err = one_line_error(RUN + ["--method", "star", "--preset", "p.json"], capsys, no_model)
    assert "preset 'p.json':" in err and needle in err, err


BAD = {  # one out-of-range (or wrong-type) value for every field of TrainConfig and the SFT baselines' configs
    TrainConfig: {"lr": 0.0, "weight_decay": -1.0, "betas": (0.9, 1.0), "max_grad_norm": "x", "grad_accum": 0,
                  "batch_size": 0, "micro_batch_size": 0, "micro_batch_tokens": 0, "steps": 0, "epochs": 0.0,
                  "warmup_steps": -1, "lr_schedule": "linear", "dtype": "fp8", "lora": "yes", "lora_r": 0,
                  "lora_alpha": -1, "lora_dropout": 1.0, "lora_target_modules": [], "kl_estimator": "k3",
                  "loss_normalization": "x", "save_every": -1, "log_every": 0, "seed": 0.5,
                  "gradient_checkpointing": 1, "share_prompts": "yes", "lean_activations": 2, "temperature": 0.0, "val_problems": -1, "val_every": -2,
                  "select": "best"},
    StarConfig: {"iterations": 0, "n_problems": 0, "samples_per_problem": 0, "max_new_tokens": 0},
    PairConfig: {"n_problems": 0, "samples_per_problem": 1, "max_pairs_per_problem": 0, "max_new_tokens": 0},
}


@pytest.mark.parametrize("cls,field,value", [(c, f, v) for c, d in BAD.items() for f, v in d.items()])
def test_every_field_has_a_range(cls, field, value):
    assert set(BAD[cls]) == {f.name for f in dataclasses.fields(cls)}  # a new field needs its range here too
    with pytest.raises(ValueError, match=field.split("_")[0]):
        cls(**{field: value})


def test_in_range_values_still_pass():
    TrainConfig(lr=1e-6, betas=[0.0, 0.5], max_grad_norm=0, micro_batch_size=None, epochs=0.5, warmup_steps=0,
                lora_dropout=0.0, save_every=0, seed=-1, temperature=0.1)
    StarConfig(n_problems=None, max_new_tokens=None)
    PairConfig(samples_per_problem=2, max_pairs_per_problem=None)
    with pytest.raises(ValueError, match="lr must be a number > 0, got nan"):
        TrainConfig(lr=math.nan)
