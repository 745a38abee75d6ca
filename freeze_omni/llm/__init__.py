"""The frozen text LLM: loading, explicit KV cache, chat template pieces, sampling."""

from freeze_omni.llm.backbone import FrozenLLM, StepOutput
from freeze_omni.llm.kv_cache import KVCache
from freeze_omni.llm.sampling import SamplingConfig

__all__ = ["FrozenLLM", "KVCache", "SamplingConfig", "StepOutput"]
