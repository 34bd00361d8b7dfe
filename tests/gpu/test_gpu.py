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
    """Two trainer steps on CUDA equal the same steps on CPU in fp32 (loss, policy-gradient term, KL, gradient
    norm; the KL is 0 at step 1 by construction, so step 2 is the one that checks it); bf16 autocast, the CUDA
    default, stays within bf16's error of them."""
    import copy
    from scorebench.training import Sequence, TrainConfig, Trainer
    seqs = [Sequence(list(range(100 + i, 140 + i)), [0.0] * 20 + [1.0 - 0.5 * i] * 20, [0.0] * 20 + [0.1] * 20)
            for i in range(4)]

    def two_steps(device, dtype, sub):
        tr = Trainer(copy.deepcopy(mt[0]), mt[1], TrainConfig(batch_size=4, micro_batch_tokens=4096, dtype=dtype,
                                                              lr=1e-4), tmp_path / sub, device=device,
                     temperature=0.7)
        return tr, [tr.step(seqs), tr.step(seqs)]
    cuda, (c1, c2) = two_steps("cuda", "float32", "cuda")
    assert cuda.accelerator.device.type == "cuda"
    _, (p1, p2) = two_steps("cpu", "float32", "cpu")
    for a, b in ((c1, p1), (c2, p2)):
        for key in ("loss", "pg", "kl", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=2e-3, abs=1e-5), key
    assert c2["kl"] > 1e-6
    bf, (b1, b2) = two_steps("cuda", "auto", "bf16")
    assert bf.accelerator.mixed_precision == "bf16"
    assert b1["loss"] == pytest.approx(p1["loss"], rel=5e-2) and b2["kl"] == pytest.approx(p2["kl"], rel=0.25)


def test_run_records_the_gpu(tmp_path):
    import json
    from scorebench.cli import main
    out = tmp_path / "run"
    assert main(["run", "--method", "base", "--task", "arith", "--limit", "4", "--device", "cuda",
                 "--out", str(out)]) == 0
    eng = json.loads((out / "config.json").read_text())["engine"]
    assert eng["device"].startswith("cuda") and eng["gpu"] == torch.cuda.get_device_name(0)
