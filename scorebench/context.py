"""The RunContext the runner hands a method: the api's contract (``scorebench.api.method.RunContext``) with the two
services that need the rest of the harness — the run's model loaded to train, and the train split without its
validation pool."""
from __future__ import annotations

from . import device, models
from .api.method import RunContext
from .training.validation import training_split


class HarnessContext(RunContext):
    """What the runner passes to ``Method.plan`` and ``Method.train`` (fields and contract: ``RunContext``)."""

    def load_model(self):
        """(model, tokenizer): the run's model (``config.model``) loaded on the run's device (``config.device``)."""
        return models.load(self.config.model, device=device.resolve(getattr(self.config, "device", "auto")))

    def train_examples(self) -> list[dict]:
        """The problems a method may train on: the task's train split without its validation pool
        (``training/validation.py``), so validation curves are never measured on trained problems."""
        return training_split(self.task.train())[0]
