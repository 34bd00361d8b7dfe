"""Training configuration, presets, and the one place method hyperparameters are resolved.

Resolution order for a method (``resolve_method_config``): the method's dataclass defaults and TrainConfig's
defaults < the preset's top-level TrainConfig fields < the preset's section(s) named after the method <
``--method-arg`` values. Unknown keys are errors, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

KL_ESTIMATORS = ("k2", "full")
"""Only estimators whose gradient, taken as a loss on on-policy samples, is the gradient of KL(pi || ref):
``full`` (exact over the vocabulary) and ``k2`` = (log pi - log ref)^2 / 2 on the sampled token. ``k1``
(log pi - log ref) has zero expected gradient as a loss and ``k3`` gives the gradient of the reverse KL(ref || pi);
both are only right as a penalty inside the reward, which is not how this trainer applies KL."""
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass
class TrainConfig:
    lr: float = 5e-6
    """Peak learning rate (paper: Adam, 5e-6)."""
    weight_decay: float = 0.0
    """AdamW weight decay (the paper uses Adam, i.e. 0)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2) moment coefficients (not the paper's KL betas)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (<= 0 disables clipping)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step when micro_batch_size is unset (micro = ceil(batch_size / grad_accum))."""
    batch_size: int = 512
    """Sequences per optimizer step (paper: 512)."""
    micro_batch_size: int | None = None
    """Sequences per forward/backward pass; None = ceil(batch_size / grad_accum)."""
    micro_batch_tokens: int | None = None
    """If set, micro-batches hold up to this many padded tokens instead of micro_batch_size sequences (sized for
    the device: a GPU takes far more tokens per pass than a CPU)."""
    steps: int = 3000
    """Optimizer steps (paper: 3000); fit() stops at the first of steps and epochs."""
    epochs: float = 1.0
    """Passes over the SFT data in fit(); a fraction allowed."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    lr_schedule: str = "constant"
    """"constant" or "cosine" (decay to 0 over the planned steps) after warm-up."""
    dtype: str = "float32"
    """"float32", "bfloat16" (accelerate mixed precision; master weights stay float32), or "auto": bfloat16 on a
    GPU or on a CPU with AMX tiles, else float32 — on a CPU without AMX (avx512_bf16 only) a bf16-autocast
    step measured 1.6x slower than fp32 (results/README.md), on an AMX CPU bf16 is the faster one."""
    lora: bool = False
    """Train a peft LoRA adapter instead of all weights (the reference is then the adapter-disabled model)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling alpha."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    lora_target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Module names LoRA adapts."""
    kl_estimator: str = "full"
    """Per-token KL(pi || ref): "full" (exact, over the vocabulary) or "k2" (on the sampled token)."""
    loss_normalization: str = "tokens"
    """Loss denominator: "tokens" (positions with a weight or KL coefficient) or "sequences"."""
    save_every: int = 0
    """Checkpoint every N optimizer steps in fit() (0 = only at the end)."""
    log_every: int = 1
    """Write a train_log.jsonl line every N optimizer steps."""
    seed: int = 0
    """Seed for data order, dropout and initialisation of LoRA."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    temperature: float = 1.0
    """Sampling temperature for training rollouts and data (paper: 1.0); policy-gradient losses use it too."""

    def __post_init__(self):
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if self.kl_estimator not in KL_ESTIMATORS:
            why = (" (k1 and k3 differentiated as a loss do not give the gradient of KL(pi || ref))"
                   if self.kl_estimator in ("k1", "k3") else "")
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}{why}")
        if self.loss_normalization not in ("tokens", "sequences"):
            raise ValueError(f"loss_normalization must be 'tokens' or 'sequences', got {self.loss_normalization!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'auto', got {self.dtype!r}")
        if self.batch_size < 1 or self.grad_accum < 1 or (self.micro_batch_size is not None and self.micro_batch_size < 1):
            raise ValueError("batch_size, grad_accum and micro_batch_size must be >= 1")
        if self.micro_batch_tokens is not None and self.micro_batch_tokens < 1:
            raise ValueError("micro_batch_tokens must be >= 1")

    def resolved_dtype(self, device: str = "cpu") -> str:
        """``dtype`` with "auto" decided for ``device`` ("cpu" or "cuda")."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device.startswith("cuda") or cpu_has_amx() else "float32"

    @property
    def micro(self) -> int:
        return self.micro_batch_size or -(-self.batch_size // self.grad_accum)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        for k in d:
            if k not in names:
                raise ValueError(f"unknown TrainConfig key {k!r} (known: {', '.join(sorted(names))})")
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d


def cpu_has_amx() -> bool:
    """Does this CPU have AMX bf16 tiles (where bf16 matmuls are several times fp32's)? Linux: /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


def load_preset(name_or_path: str | Path) -> dict:
    """A preset as a dict: a name from ``scorebench/presets`` ("cpu-small", "paper") or a JSON file path."""
    p = Path(name_or_path)
    if not p.suffix:
        cand = PRESET_DIR / f"{name_or_path}.json"
        if cand.exists():
            p = cand
    if not p.exists():
        known = sorted(x.stem for x in PRESET_DIR.glob("*.json"))
        raise ValueError(f"unknown preset {str(name_or_path)!r} (known: {', '.join(known)}, or a .json path)")
    return json.loads(p.read_text())


def _coerce(value, default):
    """--method-arg values arrive as strings from the CLI; convert them to the default's type."""
    if not isinstance(value, str) or isinstance(default, str) or default is None and not value:
        return value
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, (list, tuple)) or default is None:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value.split(",") if isinstance(default, (list, tuple)) else value
    return value


def resolve_method_config(ctx, defaults_cls, sections: list[str] | None = None):
    """(method_cfg, train_cfg) for a method from its preset and ``ctx.config.method_args``.

    ``defaults_cls`` is the method's own dataclass (its fields must not repeat TrainConfig's). ``sections`` names
    the preset sections to apply in order (default: the method's name). ``train_cfg.seed`` follows the run seed
    unless set explicitly.
    """
    cfg = ctx.config
    args = dict(getattr(cfg, "method_args", None) or {})
    preset = load_preset(args.pop("preset", "cpu-small"))
    sections = sections if sections is not None else [cfg.method]
    mnames = {f.name: f for f in fields(defaults_cls)}
    tnames = {f.name: f for f in fields(TrainConfig)}
    clash = set(mnames) & set(tnames)
    if clash:
        raise ValueError(f"{defaults_cls.__name__} repeats TrainConfig fields: {sorted(clash)}")
    merged: dict = {"seed": getattr(cfg, "seed", 0)}
    for k, v in preset.items():
        if k.startswith("_") or isinstance(v, dict):
            continue  # comments and method sections
        if k not in tnames:
            raise ValueError(f"preset: unknown top-level key {k!r} (TrainConfig fields or method sections only)")
        merged[k] = v
    for s in sections:
        for k, v in (preset.get(s) or {}).items():
            if not k.startswith("_"):
                merged[k] = v
    merged.update(args)
    m_kw, t_kw = {}, {}
    defaults_m, defaults_t = defaults_cls(), TrainConfig()
    for k, v in merged.items():
        if k in mnames:
            m_kw[k] = _coerce(v, getattr(defaults_m, k))
        elif k in tnames:
            t_kw[k] = _coerce(v, getattr(defaults_t, k))
        else:
            raise ValueError(f"unknown method argument {k!r} for {cfg.method!r} "
                             f"(known: {', '.join(sorted(set(mnames) | set(tnames) | {'preset'}))})")
    return defaults_cls(**m_kw), TrainConfig.from_dict(t_kw)
