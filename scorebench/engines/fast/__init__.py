"""The fast path of the ``hf`` engine: our own decode loop for Llama-family models (llama / mistral / qwen2).

* ``weights.py``: the snapshot of the model's weights in the compute dtype (fused QKV and gate/up, LoRA merged,
  oneDNN-packed on a CPU: fp32, or bf16 where native).
* ``model.py``: Llama's forward over that snapshot (``FastLlama``): stacked prefill, one decode step.
* ``schedule.py``: the queue of waiting samples and the schedules (``dynamic``, ``static``, ``graph``).
* ``static.py``: the fixed-shape decode step and its capture as one CUDA graph.
"""
from .model import FastLlama  # noqa: F401
from .schedule import DECODE_MODES, decode_mode  # noqa: F401
