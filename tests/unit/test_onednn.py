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
