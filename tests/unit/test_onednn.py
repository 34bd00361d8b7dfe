"""oneDNN's packed linear (``scorebench.onednn``): where it applies, and that it computes F.linear's numbers."""
import pytest
import torch
import torch.nn.functional as F

from scorebench import onednn


def test_where_it_applies():
    assert not onednn.usable(torch.float64, "cpu") and not onednn.usable(torch.float16, "cpu")
    assert not onednn.usable(torch.float32, "meta")
    assert onednn.packable(torch.zeros(2, 2)) == onednn.usable(torch.float32, "cpu")


def test_packed_linear_equals_f_linear_and_is_a_snapshot():
    if not onednn.usable(torch.float32, "cpu"):
        pytest.skip("no oneDNN in this build")
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(300, 40, generator=g), torch.randn(300, generator=g)
    x = torch.randn(7, 40, generator=g)
    packed = onednn.pack(w)
    assert torch.allclose(onednn.linear(x, packed), F.linear(x, w), atol=1e-5)
    assert torch.allclose(onednn.linear(x, packed, b), F.linear(x, w, b), atol=1e-5)
    before = onednn.linear(x, packed)
    w.mul_(2.0)  # the packed copy does not follow: callers repack when the weight changes
    assert torch.equal(onednn.linear(x, packed), before)


def test_asking_does_not_touch_the_global_generator():
    onednn._works.cache_clear()
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    onednn.usable(torch.float32, "cpu")
    assert torch.equal(torch.rand(3), want)


_GROWTH = """
import ctypes, os, sys
import scorebench, torch
class M(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "a b c d e f g used h i".split()]
libc = ctypes.CDLL("libc.so.6"); libc.mallinfo2.restype = M
w = torch.randn(512, 256).bfloat16()
torch.randn(3, 256).bfloat16() @ w.t()
before = libc.mallinfo2().used
for m in range(100, 300):  # a new matmul shape each time, as micro-batch widths and decode lengths are
    torch.randn(m, 256).bfloat16() @ w.t()
print(os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"], os.environ["LRU_CACHE_CAPACITY"],
      (libc.mallinfo2().used - before) / 1e6)
"""


def _growth(env_caps: dict) -> tuple[str, str, float]:
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    env.update(env_caps, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _GROWTH], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    dnn, lru, mb = r.stdout.split()
    return dnn, lru, float(mb)


def test_importing_scorebench_caps_the_matmul_kernel_caches():
    """``scorebench.PRIMITIVE_CACHE_CAPACITY``: importing the package caps oneDNN's and ideep's caches unless the
    environment says otherwise, and that bounds what 200 matmul shapes leave on the heap."""
    import platform
    if platform.libc_ver()[0] != "glibc" or not onednn.bf16_native():
        pytest.skip("needs glibc's mallinfo2 and a CPU whose bf16 matmuls go through oneDNN")
    dnn, lru, capped = _growth({})
    assert (dnn, lru) == ("64", "64")
    dnn, lru, default = _growth({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"})
    assert (dnn, lru) == ("1024", "1024")  # the user's setting wins
    assert default > 20 and capped < 0.5 * default, (capped, default)
