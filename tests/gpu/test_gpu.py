"""GPU checks (``pytest -m gpu``, run by scripts/gpu_check.sh): skipped, not failed, where there is no CUDA."""
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def mt():
    from scorebench import models
    return models.load(None, device="cuda")


def test_engine_greedy_equals_generate_on_cuda(mt):
    from scorebench.engines.base import SamplingParams
    from scorebench.engines.hf import HFEngine
    convs = [[{"role": "user", "content": q}] for q in ("What is 2+3?", "Name a color.", "Mia has 7 pens. She "
                                                         "buys 4 more. How many pens does Mia have now?")]
    params = SamplingParams(temperature=0.0, max_new_tokens=32)
    fast = HFEngine(model=mt[0], tokenizer=mt[1], compute_dtype="float32", batch_size=8)
    plain = HFEngine(model=mt[0], tokenizer=mt[1], fast=False, batch_size=8)
    assert fast.describe()["device"].startswith("cuda") and "gpu" in fast.describe()
    a = [c[0].token_ids for c in fast.generate(convs, params)]
    b = [c[0].token_ids for c in plain.generate(convs, params)]
    assert a == b


def test_uniforms_on_cuda_equal_cpu():
    from scorebench.engines.sampling import uniforms
    keys = torch.randint(0, 2 ** 63 - 1, (4096,), dtype=torch.long)
    ctr = torch.randint(0, 10000, (4096,), dtype=torch.long)
    assert torch.equal(uniforms(keys.cuda(), ctr.cuda()).cpu(), uniforms(keys, ctr))


def test_cuda_graph_decode(mt):
    """The captured step replays what the eager fixed-shape step computes: greedy equals ``generate``, sampled
    equals the eager schedule's samples, and an in-place weight update after the capture is seen."""
    import copy
    from scorebench.engines.base import SamplingParams
    from scorebench.engines.hf import HFEngine
    m = copy.deepcopy(mt[0])
    convs = [[{"role": "user", "content": q}] for q in ("What is 2+3?", "Name a color.", "Write a haiku about rain.",
                                                         "Mia has 7 pens. She buys 4 more. How many now?")]
    graph = HFEngine(model=m, tokenizer=mt[1], compute_dtype="float32", batch_size=3)
    eager = HFEngine(model=m, tokenizer=mt[1], compute_dtype="float32", batch_size=3, decode="static")
    plain = HFEngine(model=m, tokenizer=mt[1], fast=False, batch_size=4)
    assert graph.describe()["decode"] == "graph"
    ids = lambda outs: [[c.token_ids for c in cs] for cs in outs]  # noqa: E731
    g = SamplingParams(temperature=0.0, max_new_tokens=24)
    assert ids(graph.generate(convs, g)) == ids(plain.generate(convs, g))
    assert any(st.graph is not None for st in graph._runner.static.values())
    s = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=24, n=2, seed=3)
    assert ids(graph.generate(convs, s)) == ids(eager.generate(convs, s))
    with torch.no_grad():
        m.model.layers[5].mlp.down_proj.weight.mul_(-2.0)
    assert ids(graph.generate(convs, g)) == ids(plain.generate(convs, g))


def test_trainer_step_on_cuda(mt, tmp_path):
    import copy
    from scorebench.training import Sequence, TrainConfig, Trainer
    tr = Trainer(copy.deepcopy(mt[0]), mt[1], TrainConfig(batch_size=4, micro_batch_tokens=4096, dtype="auto",
                                                          lr=1e-5), tmp_path, device="cuda", temperature=0.7)
    assert tr.accelerator.device.type == "cuda" and tr.accelerator.mixed_precision == "bf16"
    seqs = [Sequence(list(range(100, 140)), [0.0] * 20 + [1.0] * 20, [0.0] * 20 + [0.1] * 20) for _ in range(4)]
    st = tr.step(seqs)
    assert st["grad_norm"] > 0 and st["kl"] >= 0


def test_run_records_the_gpu(tmp_path):
    import json
    from scorebench.cli import main
    out = tmp_path / "run"
    assert main(["run", "--method", "base", "--task", "arith", "--limit", "4", "--device", "cuda",
                 "--out", str(out)]) == 0
    eng = json.loads((out / "config.json").read_text())["engine"]
    assert eng["device"].startswith("cuda") and eng["gpu"] == torch.cuda.get_device_name(0)
