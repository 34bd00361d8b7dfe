"""--device on a CPU machine: auto is the CPU, cuda is one clear error before any work, the record is the truth."""

import pytest
import torch

from scorebench.cli import main
from scorebench.device import DeviceError, describe, resolve


def test_resolve():
    assert resolve("cpu") == "cpu"
    assert resolve("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="must be one of"):
        resolve("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("cmd", [["run", "--method", "base", "--task", "arith", "--limit", "2"],
                                 ["reproduce", "--table", "4", "--dry-run"],
                                 ["scaling", "--task", "arith", "--limit", "2", "--budgets", "1"]])
def test_cuda_without_cuda_is_one_line(cmd, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(cmd + ["--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]
    assert not out.exists()


def test_record_says_where_the_weights_are(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    from scorebench.engines.hf import HFEngine
    m = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)))
    d = HFEngine(model=m, tokenizer=tokenizer, device="cuda").describe()  # the argument is not the record
    assert d["device"] == "cpu" and "gpu" not in d and describe(m) == {"device": "cpu"}


def test_trainer_follows_the_model_device(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM
    from scorebench.training import TrainConfig, Trainer
    m = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, vocab_size=len(tokenizer)))
    tr = Trainer(m, tokenizer, TrainConfig(dtype="auto"), tmp_path, ref_model=False)
    assert tr.accelerator.device.type == "cpu"
    from scorebench.training.config import cpu_bf16_fast
    assert tr.accelerator.mixed_precision == ("bf16" if cpu_bf16_fast() else "no")
    assert TrainConfig(dtype="auto").resolved_dtype("cuda") == "bfloat16"


def test_gpu_small_preset_resolves():
    from scorebench.training import TrainConfig, load_preset
    p = load_preset("gpu-small")
    cfg = TrainConfig.from_dict({k: v for k, v in p.items() if not k.startswith("_") and not isinstance(v, dict)})
    assert cfg.micro_batch_tokens and cfg.dtype == "auto"
    assert p["score"]["problems_per_step"] * p["score"]["samples_per_problem"] == 256


def test_batch_size_default_follows_the_device(monkeypatch, capsys):
    """32 on a CPU (the shipped runs' value, so their keys still find them), 256 on CUDA, an explicit value kept;
    a reproduce row's command carries a non-default batch size."""
    from scorebench import device
    from scorebench.reproduce import command_for
    from scorebench.runner import RunConfig
    assert device.default_batch_size("cpu") == 32
    monkeypatch.setattr(device, "resolve", lambda name: "cuda")
    assert device.default_batch_size("auto") == 256
    from pathlib import Path
    assert "--batch-size 256" in command_for(RunConfig(task="arith", batch_size=256), Path("o"))
    assert "--batch-size" not in command_for(RunConfig(task="arith"), Path("o"))
    monkeypatch.undo()
    assert main(["reproduce", "--table", "4", "--dry-run", "--device", "cpu"]) == 0
    assert "--batch-size" not in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_gpu_check_refuses_without_cuda_and_writes_nothing(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]  # the repository
    r = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), str(tmp_path / "gpu")], capture_output=True,
                       text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert r.returncode == 1 and "no CUDA device here" in r.stderr
    assert not (tmp_path / "gpu").exists()
    assert subprocess.run(["bash", "-n", str(root / "scripts" / "gpu_check.sh")]).returncode == 0  # parses whole


def test_cpu_training_dtype_follows_measured_bf16_speed(monkeypatch):
    """dtype auto on CPU: bf16 with AMX, or where bf16 matmuls measure >= BF16_SPEEDUP x fp32 (Zen 4), else fp32
    (a non-AMX Xeon, where bf16 is slower); SCOREBENCH_CPU_BF16 decides without measuring."""
    from scorebench.training import config as c
    for amx, speedup, want in [(True, 0.5, "bfloat16"), (False, 2.1, "bfloat16"), (False, 0.6, "float32"),
                               (False, 1.2, "float32")]:
        monkeypatch.setattr(c, "_bf16_fast", None)
        monkeypatch.setattr(c, "cpu_has_amx", lambda: amx)
        monkeypatch.setattr(c, "bf16_matmul_speedup", lambda: speedup)
        monkeypatch.delenv("SCOREBENCH_CPU_BF16", raising=False)
        assert c.TrainConfig(dtype="auto").resolved_dtype("cpu") == want, (amx, speedup)
        assert c.TrainConfig(dtype="float32").resolved_dtype("cpu") == "float32"
    monkeypatch.setenv("SCOREBENCH_CPU_BF16", "0")
    assert c.TrainConfig(dtype="auto").resolved_dtype("cpu") == "float32"
    monkeypatch.setenv("SCOREBENCH_CPU_BF16", "1")
    assert c.TrainConfig(dtype="auto").resolved_dtype("cpu") == "bfloat16"


_HEAP_PROBE = """
import sys
from scorebench.device import set_mmap_threshold, trim_heap
from scorebench.machine import rss_gb
if sys.argv[1] == "mmap64k" and not set_mmap_threshold(64 * 1024):
    print("no-glibc"); sys.exit()
blocks = [bytearray(100_000) for _ in range(2000)]  # 200 MB of 100 KB blocks, every page touched
for b in blocks:
    b[::4096] = b"\\x01" * len(range(0, 100_000, 4096))
keep = bytearray(100_000)  # allocated last: above the freed ones, so the heap's top cannot shrink by itself
before = rss_gb()
del blocks
freed = rss_gb()
if sys.argv[1] == "trim" and not trim_heap():
    print("no-glibc"); sys.exit()
print(before - freed, freed - rss_gb(), len(keep))
"""


def _heap_probe(mode: str) -> tuple[float, float] | None:
    """(GB handed back by free(), GB handed back after it — by ``trim_heap`` in mode "trim") for 200 MB of 100 KB
    blocks freed behind one still in use, in a fresh interpreter: a long-lived process (the test suite) serves such
    blocks from the free chunks of its heap, so what glibc does with new ones shows only in a new process. None
    where there is no glibc or no /proc."""
    import subprocess
    import sys
    from scorebench.machine import rss_gb
    if rss_gb() is None:
        return None
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    return None if out[0] == "no-glibc" else (float(out[0]), float(out[1]))


def test_trim_heap_hands_freed_heap_pages_back():
    """Blocks below glibc's mmap threshold live on the heap: free() alone keeps their pages resident, until
    ``trim_heap``."""
    got = _heap_probe("trim")
    if got is None:
        pytest.skip("needs glibc and Linux /proc")
    by_free, by_trim = got
    assert by_free < 0.05  # GB: free() alone kept them resident
    assert by_trim > 0.15  # GB: trim returned most of the 200 MB


def test_rss_gb_peak_keeps_the_high_water_mark():
    """``rss_gb(peak=True)`` (what runs log as ``peak_rss_gb``) keeps a 300 MB allocation after it is freed, while
    ``rss_gb()`` falls back: a peak read from VmRSS would miss it, one from the CPU count would be constant."""
    from scorebench.machine import cpu_model, basics, rss_gb
    if rss_gb() is None:
        pytest.skip("needs Linux /proc")
    import mmap
    start_peak = rss_gb(peak=True)
    # an anonymous mapping of its own, not malloc: glibc may serve even 300 MB from free chunks an earlier test left
    # on the heap (already resident, and kept on free), which made this test flaky in CI
    big = mmap.mmap(-1, 300_000_000)
    for _ in range(300):
        big.write(b"\x01" * 1_000_000)  # written, so resident
    during = rss_gb()
    big.close()  # munmap: the pages leave at once
    after, peak = rss_gb(), rss_gb(peak=True)
    assert during - after > 0.25  # GB: the current size fell back
    # the peak did not (VmHWM may lag VmRSS by the kernel's per-thread RSS cache, a few hundred kB: 0.529 vs 0.53)
    assert peak >= max(start_peak, during) - 0.005 and peak - after > 0.25
    assert basics()["cpu"] == cpu_model()  # a run's config.json names the CPU it ran on


def test_set_mmap_threshold_maps_blocks_above_it():
    """The same blocks with the threshold set to 64 KB first: each is mapped on its own, so free() alone hands the
    pages back — where glibc's default (the control) keeps them on the heap."""
    got, control = _heap_probe("mmap64k"), _heap_probe("default")
    if got is None or control is None:
        pytest.skip("needs glibc and Linux /proc")
    assert got[0] > 0.15  # GB handed back by free() alone
    assert control[0] < 0.05  # the control: glibc's default kept them
