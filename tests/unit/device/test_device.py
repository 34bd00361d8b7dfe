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


def test_trim_heap_hands_freed_heap_pages_back():
    """200 MB of 100 KB blocks (below glibc's mmap threshold: on the heap) freed behind one block still in use, so
    glibc cannot shrink the heap's top by itself: the pages stay resident until ``trim_heap``."""
    import ctypes.util
    from scorebench.device import trim_heap
    from scorebench.machine import proc_field
    if proc_field("/proc/self/status", "VmRSS") is None or not ctypes.util.find_library("c"):
        pytest.skip("needs Linux /proc and a C library")
    blocks = [bytearray(100_000) for _ in range(2000)]
    for b in blocks:
        b[::4096] = b"\x01" * len(range(0, 100_000, 4096))  # touch every page
    keep = bytearray(100_000)  # allocated last: above the freed ones
    before = proc_field("/proc/self/status", "VmRSS")
    del blocks
    freed = proc_field("/proc/self/status", "VmRSS")
    if not trim_heap():
        pytest.skip("no glibc malloc_trim here")
    after = proc_field("/proc/self/status", "VmRSS")
    assert before - freed < 50_000  # kB: free() alone kept them resident
    assert freed - after > 150_000  # kB: trim returned most of the 200 MB
    assert len(keep) == 100_000


def test_rss_gb_peak_keeps_the_high_water_mark():
    """``rss_gb(peak=True)`` (what runs log as ``peak_rss_gb``) keeps a 300 MB allocation after it is freed, while
    ``rss_gb()`` falls back: a peak read from VmRSS would miss it, one from the CPU count would be constant."""
    from scorebench.machine import cpu_model, basics, rss_gb
    if rss_gb() is None:
        pytest.skip("needs Linux /proc")
    start_peak = rss_gb(peak=True)
    big = b"\x01" * 300_000_000  # written, so resident; above the mmap threshold, so unmapped on free
    during = rss_gb()
    del big
    after, peak = rss_gb(), rss_gb(peak=True)
    assert during - after > 0.25  # GB: the current size fell back
    assert peak >= max(start_peak, during) and peak - after > 0.25  # the peak did not
    assert basics()["cpu"] == cpu_model()  # a run's config.json names the CPU it ran on


def test_set_mmap_threshold_maps_blocks_above_it():
    """The trim test's 200 MB of 100 KB blocks again, with the threshold set to 64 KB first: each block is mapped on
    its own, so free() alone hands the pages back — where glibc's default keeps them on the heap. In a fresh
    interpreter: a long-lived process serves such blocks from the free chunks of its heap, mapped or not."""
    import subprocess
    import sys
    from scorebench.machine import rss_gb
    if rss_gb() is None:
        pytest.skip("needs Linux /proc")
    probe = """
import sys
from scorebench.device import set_mmap_threshold
from scorebench.machine import rss_gb
if sys.argv[1] == "set" and not set_mmap_threshold(64 * 1024):
    print("no-glibc"); sys.exit()
blocks = [bytearray(100_000) for _ in range(2000)]
for b in blocks:
    b[::4096] = b"\\x01" * len(range(0, 100_000, 4096))
keep = bytearray(100_000)
before = rss_gb()
del blocks
print(before - rss_gb(), len(keep))
"""
    out = {mode: subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True,
                                timeout=120).stdout.split()[0] for mode in ("set", "default")}
    if out["set"] == "no-glibc":
        pytest.skip("needs glibc")
    assert float(out["set"]) > 0.15  # GB handed back by free() alone
    assert float(out["default"]) < 0.05  # the control: glibc's default kept them
