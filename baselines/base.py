"""``base``: the shared protocol applied to the untrained model (the paper's "Base model" row)."""
from scorebench.api import Method


class BaseMethod(Method):
    description = "the untrained model under the two-turn protocol (no training)"
    trains = False
