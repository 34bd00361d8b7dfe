"""Engines: ``get_engine(name, model=..., ...)``. ``hf`` runs anywhere torch runs; ``vllm`` needs a GPU."""
from .base import Completion, Engine, SamplingParams  # noqa: F401


def get_engine(name: str, **kwargs) -> Engine:
    from ..registry import ENGINES
    return ENGINES.get(name)(**kwargs)
