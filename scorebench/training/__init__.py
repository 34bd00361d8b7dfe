"""Shared training code: TrainConfig + presets, episodes -> weighted token sequences, and the Trainer.

The names below resolve on first use (PEP 562), so importing a light submodule (``training.config``,
``training.plan``, ``training.validation``) does not load the trainer and with it torch: the run layer imports
those at the top of its modules and still answers a usage error in a fraction of a second."""
from importlib import import_module

_HOME = {"TrainConfig": "config", "load_preset": "config", "resolve_method_config": "config",
         "Sequence": "sequences", "end_of_turn": "sequences", "episode_to_sequence": "sequences",
         "episode_to_sequences": "sequences", "plot_log": "curves", "Trainer": "trainer"}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
