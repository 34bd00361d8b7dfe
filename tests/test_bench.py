"""The bench's roofline arithmetic on a hand case."""
import pytest


def test_bench_roofline_hand_case():
    """Bandwidth-bound below the knee, compute-bound above it; KV-cache bytes lower the bandwidth bound."""
    from scorebench.bench import roofline
    # 100 params, 200 bytes of weights; 1000 B/s; 10,000 FLOP/s -> compute bound = 10,000 / 200 = 50 tok/s
    assert roofline(100, 200, 1, 1000.0, 10_000.0) == pytest.approx(5.0)    # 1 x 1000 / 200
    assert roofline(100, 200, 8, 1000.0, 10_000.0) == pytest.approx(40.0)   # 8 x 1000 / 200
    assert roofline(100, 200, 64, 1000.0, 10_000.0) == pytest.approx(50.0)  # compute bound
    assert roofline(100, 200, 8, 1000.0, 10_000.0, kv_bytes=25.0) == pytest.approx(20.0)  # 8000 / (200 + 200)
