"""Training configuration, presets, and the one place method hyperparameters are resolved.

Resolution order for a method (``resolve_method_config``): the method's dataclass defaults and TrainConfig's
defaults < the preset's top-level TrainConfig fields < the preset's section(s) named after the method <
``--method-arg`` values. Unknown keys are errors, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
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
    GPU, and on a CPU where bf16 matmuls measure faster than fp32 (AMX tiles, or avx512_bf16 on AMD Zen 4: a
    step 2.3x faster), else float32 (a non-AMX Xeon's bf16 step measured 1.6x slower): ``cpu_bf16_fast``.
    Training rollouts are sampled in this dtype too (one precision)."""
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
    share_prompts: bool = True
    """Run each prompt that several sequences of a step start with once per step, as their shared past
    (``training/prompts.py``): same loss and gradients, a sixth fewer decoder tokens on a 16 x 4 SCoRe step. Off
    by itself under gradient checkpointing and in multi-process runs."""
    lean_activations: bool = True
    """The policy's RMSNorms and SwiGLU MLPs keep fewer activations for backward (``training/lean.py``): same
    outputs, same gradients up to fp32 summation order, a quarter less activation memory per micro-batch."""
    temperature: float = 1.0
    """Sampling temperature for training rollouts and data (paper: 1.0); policy-gradient losses use it too."""
    val_problems: int = 200
    """Problems of the validation pool (carved from the train split, never trained on) the policy is evaluated on,
    greedy, two turns, during RL training (``train/val_log.jsonl``); 0 = no validation."""
    val_every: int = 0
    """Validate every N optimizer steps (and at step 0 and the end); 0 = sized after the first step so that
    validation takes at most a fifth of training time."""
    select: str = "final"
    """Which policy the test evaluates: "final", or "best_val_delta" (the validation point of the highest Δ)."""

    def __post_init__(self):
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if self.kl_estimator not in KL_ESTIMATORS:
            why = (" (k1 and k3 differentiated as a loss do not give the gradient of KL(pi || ref))"
                   if self.kl_estimator in ("k1", "k3") else "")
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}{why}")
        if self.loss_normalization not in ("tokens", "sequences"):
            raise ValueError(f"loss_normalization must be 'tokens' or 'sequences', got {self.loss_normalization!r}")
        if self.select not in ("final", "best_val_delta"):
            raise ValueError(f"select must be 'final' or 'best_val_delta', got {self.select!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'auto', got {self.dtype!r}")
        check_number("lr", self.lr, gt=0)
        check_number("weight_decay", self.weight_decay, ge=0)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            check_number(f"betas[{i}]", b, ge=0, lt=1)
        check_number("max_grad_norm", self.max_grad_norm)
        check_number("grad_accum", self.grad_accum, integer=True, ge=1)
        check_number("batch_size", self.batch_size, integer=True, ge=1)
        check_number("micro_batch_size", self.micro_batch_size, integer=True, ge=1, optional=True)
        check_number("micro_batch_tokens", self.micro_batch_tokens, integer=True, ge=1, optional=True)
        check_number("steps", self.steps, integer=True, ge=1)
        check_number("epochs", self.epochs, gt=0)
        check_number("warmup_steps", self.warmup_steps, integer=True, ge=0)
        check_bool("lora", self.lora)
        check_number("lora_r", self.lora_r, integer=True, ge=1)
        check_number("lora_alpha", self.lora_alpha, gt=0)
        check_number("lora_dropout", self.lora_dropout, ge=0, lt=1)
        if (not isinstance(self.lora_target_modules, (list, tuple)) or not self.lora_target_modules
                or not all(isinstance(m, str) and m for m in self.lora_target_modules)):
            raise ValueError(f"lora_target_modules must be a non-empty list of module names, "
                             f"got {self.lora_target_modules!r}")
        check_number("save_every", self.save_every, integer=True, ge=0)
        check_number("log_every", self.log_every, integer=True, ge=1)
        check_number("seed", self.seed, integer=True)
        check_bool("gradient_checkpointing", self.gradient_checkpointing)
        check_bool("share_prompts", self.share_prompts)
        check_bool("lean_activations", self.lean_activations)
        check_number("temperature", self.temperature, gt=0)
        check_number("val_problems", self.val_problems, integer=True, ge=0)
        check_number("val_every", self.val_every, integer=True, ge=0)

    def resolved_dtype(self, device: str = "cpu") -> str:
        """``dtype`` with "auto" decided for ``device`` ("cpu" or "cuda")."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device.startswith("cuda") or cpu_bf16_fast() else "float32"

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


def check_number(name: str, value, *, integer: bool = False, gt=None, ge=None, lt=None, le=None,
                 optional: bool = False) -> None:
    """Raise ValueError (one line naming ``name``) unless ``value`` is a finite number (an integer when
    ``integer``; never a bool) within the given bounds; ``optional`` also accepts None. The range checks of every
    method config and of TrainConfig go through here, so a bad preset value or ``--method-arg`` is refused before
    any model loads, in the same words."""
    if value is None and optional:
        return
    low = f"> {gt}" if gt is not None else f">= {ge}" if ge is not None else None
    high = f"< {lt}" if lt is not None else f"<= {le}" if le is not None else None
    if low and high:
        bounds = (f" in {'(' if gt is not None else '['}{gt if gt is not None else ge}, "
                  f"{lt if lt is not None else le}{')' if lt is not None else ']'}")
    else:
        bounds = f" {low or high}" if low or high else ""
    want = f"{'an integer' if integer else 'a number'}{bounds}{' (or null)' if optional else ''}"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{name} must be {want}, got {value!r}")
    ok = math.isfinite(value) and (gt is None or value > gt) and (ge is None or value >= ge) \
        and (lt is None or value < lt) and (le is None or value <= le)
    if not ok:
        raise ValueError(f"{name} must be {want}, got {value!r}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


BF16_SPEEDUP = 1.3
"""bf16 is the CPU training dtype under "auto" when its matmuls measure at least this much faster than fp32's."""
_bf16_fast: bool | None = None


def bf16_matmul_speedup(rows: int = 1024, reps: int = 4) -> float:
    """fp32 time / bf16 time of a matmul of a training step's shape (rows x 576 x 1536), best of ``reps`` each,
    alternated, at the current thread count (about 0.2 s)."""
    import torch  # here: config is imported on the way to one-line usage errors, torch takes seconds
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    mats = {dt: (torch.randn(rows, 576, dtype=dt), torch.randn(576, 1536, dtype=dt)) for dt in best}
    for _ in range(reps + 1):  # the first round warms up (oneDNN picks its kernels)
        for dt, (a, b) in mats.items():
            t0 = time.perf_counter()
            a @ b
            best[dt] = min(best[dt], time.perf_counter() - t0)
    return best[torch.float32] / best[torch.bfloat16]


def cpu_bf16_fast() -> bool:
    """Is bf16 autocast the faster training dtype on this CPU? With AMX tiles, yes; otherwise measured once per
    process (``bf16_matmul_speedup`` >= ``BF16_SPEEDUP``): CPUs with avx512_bf16 differ — on a non-AMX Xeon a
    bf16 step measured 1.6x slower than fp32, on an AMD EPYC (Zen 4) 2.3x faster (results/signal-arith.md).
    ``SCOREBENCH_CPU_BF16=1`` / ``0`` decides it without measuring (the choice is recorded as the run's
    ``train_dtype``)."""
    global _bf16_fast
    forced = os.environ.get("SCOREBENCH_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if _bf16_fast is None:
        try:
            import torch
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except Exception:  # pragma: no cover - old torch
            native = False
        _bf16_fast = cpu_has_amx() or (native and bf16_matmul_speedup() >= BF16_SPEEDUP)
    return _bf16_fast


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


def _coerce(value, default, key: str = "value"):
    """--method-arg values arrive as strings from the CLI; convert them to the default's type (a value that does
    not convert is a ValueError naming ``key``)."""
    if not isinstance(value, str) or isinstance(default, str) or default is None and not value:
        return value
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} expects true or false, got {value!r}")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{key} expects an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{key} expects a number, got {value!r}") from None
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
    preset_name = str(args.pop("preset", "cpu-small"))
    preset = load_preset(preset_name)
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
    source = {k: f"preset {preset_name!r}:" for k in merged if k != "seed"}
    merged.update(args)
    for named, other in (("micro_batch_size", "micro_batch_tokens"), ("micro_batch_tokens", "micro_batch_size")):
        if named in args and other not in args:  # two ways to cut a step: the one asked for replaces the preset's
            merged.pop(other, None)  # (a preset's token cap would otherwise win over an asked-for count)
    source.update({k: "--method-arg" for k in args})
    m_kw, t_kw = {}, {}
    defaults_m, defaults_t = defaults_cls(), TrainConfig()
    try:
        for k, v in merged.items():
            if k in mnames:
                m_kw[k] = _coerce(v, getattr(defaults_m, k), k)
            elif k in tnames:
                t_kw[k] = _coerce(v, getattr(defaults_t, k), k)
            else:
                raise ValueError(f"unknown method argument {k!r} for {cfg.method!r} "
                                 f"(known: {', '.join(sorted(set(mnames) | set(tnames) | {'preset'}))})")
        return defaults_cls(**m_kw), TrainConfig.from_dict(t_kw)
    except ValueError as e:  # say where a bad value came from: "--method-arg lr must be ..." / "preset 'x': ..."
        msg = str(e)
        key = msg.split(" ", 1)[0].split("[", 1)[0]
        raise ValueError(f"{source[key]} {msg}" if key in source else msg) from None
