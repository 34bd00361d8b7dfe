"""scorebench.api, the bottom layer: it loads nothing else of scorebench, the old import paths give its very
objects, and ``Method.configure`` is how a method's arguments are checked (``train`` is not run to find out)."""
from __future__ import annotations

import ast
import subprocess
import sys
from types import SimpleNamespace

import pytest

import scorebench.api as api
from scorebench import checks


def test_importing_the_api_loads_no_other_scorebench_module():
    code = "import sys, scorebench.api; print(sorted(m for m in sys.modules if m.startswith('scorebench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    assert loaded and all(m == "scorebench" or m.startswith("scorebench.api") for m in loaded), loaded


def test_old_import_paths_are_the_api_objects():
    from scorebench import engines, method, protocol, registry, seeding
    from scorebench.engines import base as engine_base
    from scorebench.tasks import base as task_base
    assert protocol.Turn is api.Turn and protocol.Episode is api.Episode and protocol.run_protocol is api.run_protocol
    assert engine_base.Engine is api.Engine and engines.SamplingParams is api.SamplingParams
    assert engine_base.Completion is api.Completion and engine_base.render_ids is api.render_ids
    assert task_base.Task is api.Task and method.Method is api.Method and seeding.derive_seed is api.derive_seed
    assert registry.METHODS is api.METHODS and registry.UnknownName is api.UnknownName
    assert issubclass(method.RunContext, api.RunContext)  # the runner's: it can load the model, carve the split


class Plain(api.Method):
    trains = True

    def train(self, ctx):
        raise AssertionError("train ran to check arguments")


class Strict(Plain):
    def method_config(self, ctx):
        args = dict(ctx.config.method_args)
        if set(args) - {"lr"}:
            raise ValueError(f"unknown method argument {sorted(set(args) - {'lr'})[0]!r} for {ctx.config.method!r}"
                             "\nsecond line")
        return {"lr": float(args.get("lr", 1e-3)), "seed": ctx.config.seed}


def _cfg(name, **args):
    return SimpleNamespace(method=name, method_args=args)


def test_configure_resolves_through_method_config_without_training():
    s = Strict()
    s.name = "strict"
    assert s.configure({"lr": "0.5"}) == {"lr": 0.5, "seed": 0}
    assert Plain().configure({"anything": 1}) == {"anything": 1}  # the default takes the arguments as given
    checks.method_args(_cfg("plain", anything=1), Plain())
    checks.method_args(_cfg("strict", lr="0.1"), s)
    with pytest.raises(checks.UsageError) as e:
        checks.method_args(_cfg("strict", bogus=1), s)
    assert str(e.value) == "method 'strict': unknown method argument 'bogus' for 'strict'"


def test_a_method_that_does_not_train_takes_no_arguments():
    class Prompting(api.Method):
        def configure(self, method_args):
            raise AssertionError("not asked: it does not train")
    checks.method_args(_cfg("prompting"), Prompting())
    with pytest.raises(checks.UsageError, match="does not train and takes no --preset or --method-arg"):
        checks.method_args(_cfg("prompting", preset="x"), Prompting())


def test_the_builtin_methods_check_their_arguments_in_configure():
    for name in api.METHODS.names():
        cls = api.METHODS.get(name)
        if cls.trains:
            with pytest.raises(ValueError, match="unknown method argument 'bogus'"):
                cls().configure({"bogus": 1})
            with pytest.raises(ValueError, match="unknown preset"):
                cls().configure({"preset": "missing.json"})


def test_the_registry_refuses_what_is_not_its_base_class():
    reg = api.Registry("methods", base=api.Method)
    reg._check(Plain)
    with pytest.raises(TypeError, match="not a subclass of scorebench.api.method.Method"):
        reg._check(object)


def test_the_api_context_leaves_loading_to_the_harness():
    ctx = api.RunContext(config=None, task=None, engine=SimpleNamespace(trainable_model=lambda: None), run_dir=None)
    with pytest.raises(NotImplementedError):
        ctx.trainable_model()
    with pytest.raises(NotImplementedError):
        ctx.train_examples()
