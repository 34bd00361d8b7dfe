"""The vLLM engine for GPU users, behind the same interface as the HF engine.

vLLM 0.33 is CUDA-only and pins torch 2.14 / transformers <5.21, so it is an optional extra
(``pip install 'scorebench[vllm]'``) imported lazily: constructing this engine without vLLM or a GPU fails with
one clear line, and nothing else in scorebench imports vllm.
"""
from __future__ import annotations

from ..registry import ENGINES
from .base import Completion, Engine, SamplingParams


class EngineUnavailable(RuntimeError):
    pass


@ENGINES.register("vllm")
class VLLMEngine(Engine):
    def __init__(self, model_name: str | None = None, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.85,
                 tensor_parallel_size: int = 1, **_):
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise EngineUnavailable("engine 'vllm' needs `pip install 'scorebench[vllm]'` and a CUDA GPU; "
                                    "use --engine hf on CPU") from None
        import torch
        if not torch.cuda.is_available():
            raise EngineUnavailable("engine 'vllm' needs a CUDA GPU (none found); use --engine hf on CPU")
        from vllm import LLM
        from .. import models
        from ..dist import world
        path = models.resolve(model_name)
        kw = {}
        if world() > 1:  # launched by accelerate/torchrun: one replica per rank in the launcher's process group
            kw = {"distributed_executor_backend": "external_launcher", "data_parallel_size": world()}
        self.llm = LLM(model=path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       tensor_parallel_size=tensor_parallel_size, enable_prefix_caching=True, **kw)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_name, self.dtype = model_name, dtype

    def describe(self) -> dict:
        import vllm
        return {"engine": self.name, "dtype": self.dtype, "vllm": vllm.__version__}

    def generate(self, conversations, params: SamplingParams, desc=None):
        from vllm import SamplingParams as VSP
        from vllm.inputs import TokensPrompt
        prompts = [self.render(c) for c in conversations]
        sp = VSP(n=params.n, temperature=params.temperature, top_p=params.top_p,
                 max_tokens=params.max_new_tokens, seed=params.seed)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sp, use_tqdm=True)
        result = []
        for p, o in zip(prompts, outs):
            result.append([Completion(text=c.text.strip(), token_ids=list(c.token_ids), prompt_ids=p,
                                      finish_reason="stop" if c.finish_reason == "stop" else "length")
                           for c in o.outputs])
        return result

    def sync_weights(self, model) -> None:
        self.load_weights(model)

    def load_weights(self, model) -> None:
        """Push a trainer's current weights into the vLLM worker (the on-policy sync for RL on GPU)."""
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(model.state_dict().items())
