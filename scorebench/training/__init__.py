"""Shared training code: TrainConfig + presets, episodes -> weighted token sequences, and the Trainer."""
from .config import TrainConfig, load_preset, resolve_method_config  # noqa: F401
from .sequences import Sequence, end_of_turn, episode_to_sequence, episode_to_sequences  # noqa: F401
from .curves import plot_log  # noqa: F401
from .trainer import Trainer  # noqa: F401
