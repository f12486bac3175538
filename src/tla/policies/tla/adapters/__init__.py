"""VLM adapters: the one place that knows a VLM family (see `base.VLMAdapter`); `model.adapter` names one.

Adding a Hugging Face VLM = one file here with a `VLMAdapter` subclass + its line in `ADAPTERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tla.policies.tla.adapters.base import Visual, VLMAdapter
from tla.policies.tla.adapters.qwen2_vl import Qwen2VLAdapter

if TYPE_CHECKING:
    from tla.policies.tla.config import ModelConfig

ADAPTERS: dict[str, type[VLMAdapter]] = {"qwen2_vl": Qwen2VLAdapter}  # Qwen2.5-VL checkpoints load here too
DEFAULT_ADAPTER = "qwen2_vl"


def check_adapter(name: str) -> str:
    if name not in ADAPTERS:
        raise ValueError(f"unknown model.adapter {name!r}; choose one of {', '.join(sorted(ADAPTERS))}")
    return name


def adapter_for(model_cfg: ModelConfig | str | None = None) -> VLMAdapter:
    """The adapter a ModelConfig (or an adapter name; None: the default) names."""
    name = model_cfg if isinstance(model_cfg, str) or model_cfg is None else model_cfg.adapter
    return ADAPTERS[check_adapter(name or DEFAULT_ADAPTER)]()


__all__ = ["ADAPTERS", "VLMAdapter", "Visual", "adapter_for", "check_adapter"]
