"""Packaging: set-up printed setuptools' license deprecation three times (issue 23 item 6)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_pyproject_license_gives_setuptools_no_deprecation_warning(monkeypatch):
    import warnings
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), "pyproject.toml")
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message)[:200] for w in caught]
    assert "Apache-2.0" in (getattr(dist.metadata, "license_expression", None) or dist.metadata.license)
