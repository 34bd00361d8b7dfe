"""``scripts/seed_contrast.py``: the textbook intervals the nineteenth session's reading was written in, against
hand-computed values (t quantiles from a printed table: t(0.975, 2) = 4.3027, t(0.975, 4) = 2.7764)."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sc(load_script):
    return load_script("seed_contrast")


def test_t_interval_of_three_seeds(sc):
    lo, hi = sc.t_interval(np.array([1.0, 2.0, 3.0]))  # mean 2, sd 1, se 1/sqrt(3)
    assert lo == pytest.approx(2 - 4.3027 / np.sqrt(3), abs=1e-3) and hi == pytest.approx(2 + 4.3027 / np.sqrt(3), abs=1e-3)


def test_welch_with_equal_variances_has_2n_minus_2_degrees(sc):
    w = sc.welch(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0]))  # se sqrt(2/3), df 4
    assert w["difference"] == pytest.approx(1.0)
    assert w["df"] == pytest.approx(4.0)
    assert w["ci95"] == pytest.approx([1 - 2.7764 * np.sqrt(2 / 3), 1 + 2.7764 * np.sqrt(2 / 3)], abs=1e-3)


def test_welch_unequal_variances_lowers_the_degrees(sc):
    # va = 1/3 and vb = 100/3 per mean: df = (101/3)^2 / ((1/3)^2/2 + (100/3)^2/2) = 2 * 101^2 / (1 + 100^2)
    w = sc.welch(np.array([1.0, 2.0, 3.0]), np.array([0.0, 10.0, 20.0]))
    assert w["df"] == pytest.approx(2 * 101 ** 2 / (1 + 100 ** 2))


def test_main_one_group_or_two(sc, monkeypatch, capsys):
    """Without "--" the runs are one group: its mean and t interval, no difference; with it, Welch's too."""
    import json
    deltas = {"a": 0.01, "b": 0.02, "c": 0.03, "x": 0.0, "y": 0.01, "z": 0.02}
    monkeypatch.setattr(sc, "recompute", lambda r: {"delta": deltas[r]})
    assert sc.main(["a", "b", "c"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert len(one["groups"]) == 1 and "a_minus_b" not in one
    assert one["groups"][0]["mean"] == pytest.approx(2.0)
    assert one["groups"][0]["t_ci95"] == pytest.approx([2 - 4.3027 / np.sqrt(3), 2 + 4.3027 / np.sqrt(3)], abs=1e-2)
    assert sc.main(["a", "b", "c", "--", "x", "y", "z"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["a_minus_b"]["difference"] == pytest.approx(1.0) and two["all"]["n"] == 6
