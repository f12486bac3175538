"""The backbone's training mode, VLM-agnostic: full training, or LoRA on the language model only.

Which modules LoRA targets and which parameters are the vision side is the VLM adapter's to say
(`adapters/`); building the backbone is too (`VLMAdapter.build`).
"""

from __future__ import annotations

from tla.policies.tla.adapters import VLMAdapter, adapter_for
from tla.policies.tla.adapters.base import torch_dtype
from tla.policies.tla.adapters.qwen2_vl import qwen2vl_7b_config  # re-exported for the tests' meta checks
from tla.policies.tla.config import ModelConfig

__all__ = ["apply_train_mode", "build_backbone", "check_adapters", "count_parameters", "qwen2vl_7b_config",
           "torch_dtype"]


def build_backbone(cfg: ModelConfig, tokenizer, adapter: VLMAdapter | None = None):
    return (adapter or adapter_for(cfg)).build(cfg, tokenizer)


def apply_train_mode(model, cfg: ModelConfig, adapter: VLMAdapter | None = None):
    """`full`: every weight trains. `lora`: freeze the backbone, add LoRA adapters on the LM's linears."""
    if cfg.train_mode == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    adapter = adapter or adapter_for(cfg)
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=adapter.lora_target_modules(cfg.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)  # freezes every base weight; vision tower + merger stay frozen
    if not cfg.freeze_vision:
        for n, p in model.named_parameters():
            if adapter.is_vision(n):
                p.requires_grad_(True)
    check_adapters(model, adapter)
    return model


def check_adapters(model, adapter: VLMAdapter | None = None) -> None:
    """Fail loudly if any vision module carries a LoRA adapter."""
    adapter = adapter or adapter_for()
    bad = [n for n, _ in model.named_modules() if adapter.is_vision(n) and "lora_" in n]
    if bad:
        raise RuntimeError(f"LoRA adapters found in the vision tower: {bad[:5]}")


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
