"""Methods reach the policy only through RunContext: with an engine that holds its own copy of the weights (the
shape of vLLM), SCoRe trains a separately loaded model and pushes its weights to the engine after every step."""
import copy
import json
from types import SimpleNamespace

import torch

from scorebench.engines.base import Engine
from scorebench.method import RunContext
from scorebench.registry import METHODS
from scorebench.rundir import RunDir


class RecordingEngine(Engine):
    """Samples greedily from its *own* copy of the model (like vLLM, which holds weights in its workers) and
    records every policy sync; ``trainable_model()`` is None, so the context loads the model to train."""
    name = "recording"

    def __init__(self, model, tok):
        from scorebench.engines.hf import HFEngine
        self.copy = copy.deepcopy(model)
        self.inner = HFEngine(model=self.copy, tokenizer=tok, compute_dtype="float32", batch_size=8)
        self.tokenizer, self.syncs = tok, []

    def generate(self, conversations, params, desc=None):
        return self.inner.generate(conversations, params, desc)

    def sync_weights(self, model):
        self.syncs.append(model)
        with torch.no_grad():
            self.copy.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})


def test_score_pushes_weights_to_an_engine_with_its_own_copy(tiny_model_dir, tokenizer, tmp_path, coin_arith):
    from scorebench import models
    model, tok = models.load(str(tiny_model_dir))
    engine = RecordingEngine(model, tok)
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"lr": 1e-2, "batch_size": 4, "dtype": "float32", "temperature": 1.0,
                                  "score": {"stage1_steps": 1, "stage2_steps": 2, "problems_per_step": 2,
                                            "samples_per_problem": 2, "max_new_tokens": 6}}))
    cfg = SimpleNamespace(method="score", seed=0, turns=2, max_new_tokens=None, batch_size=8, model=str(tiny_model_dir),
                          device="cpu", dtype="float32", method_args={"preset": str(preset)})
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    rd.init({"config": {"method": "score"}})
    ctx = RunContext(config=cfg, task=coin_arith(n_train=8, n_test=2), engine=engine, run_dir=rd)
    policy = METHODS.get("score")().train(ctx)
    # one sync after the (possible) resume, then one per optimizer step, always the trained model object
    assert len(engine.syncs) == 1 + 3 and len({id(m) for m in engine.syncs}) == 1
    trained = engine.syncs[-1]
    assert trained is not engine.copy
    for (n1, p1), (n2, p2) in zip(trained.state_dict().items(), engine.copy.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    moved = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), engine.copy.state_dict().values()))
    assert moved  # the engine samples the trained weights, not the ones it started with
    assert (policy / ".complete").exists()
    steps = [json.loads(x)["step"] for x in (rd.path / "train" / "rollouts.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3] and len(steps) == 3 * 4
