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
