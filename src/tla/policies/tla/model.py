"""The Qwen2-VL backbone: tiny random-init or local pretrained, then full training or LoRA.

LoRA goes on the language model's linear layers only, selected by module *path*: Qwen2.5-VL's vision MLP
reuses the names gate/up/down_proj, so bare names would also adapt the vision tower.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForImageTextToText, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from tla.policies.tla.config import ModelConfig, TinyBackbone

# Module paths of the language model's decoder layers (transformers >= 4.52 layout) and of the vision side.
LM_LAYERS = r"model\.language_model\.layers\.\d+"
VISION_PREFIX = "model.visual"


def _token_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def tiny_config(t: TinyBackbone, tokenizer) -> Qwen2VLConfig:
    head_dim = t.text_hidden // t.text_heads
    q = (
        head_dim // 16
    )  # M-RoPE splits head_dim/2 rotary pairs over (time, height, width) as 2:3:3, like Qwen's 16:24:24
    ids = _token_ids(tokenizer)
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=t.text_hidden,
            intermediate_size=t.text_intermediate,
            num_hidden_layers=t.text_layers,
            num_attention_heads=t.text_heads,
            num_key_value_heads=t.text_kv_heads,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [q * 2, q * 3, q * 3],
            },
            bos_token_id=None,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            depth=t.vision_depth,
            embed_dim=t.vision_embed,
            hidden_size=t.text_hidden,
            num_heads=t.vision_heads,
            mlp_ratio=2,
        ),
        tie_word_embeddings=False,
        **ids,
    )


def qwen2vl_7b_config() -> Qwen2VLConfig:
    """Qwen2-VL-7B-Instruct's architecture (from its published config.json), for meta-device checks."""
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            bos_token_id=151643,
            eos_token_id=151645,
        ),
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
    )


def torch_dtype(name: str) -> torch.dtype:
    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def build_backbone(cfg: ModelConfig, tokenizer):
    if cfg.preset == "tiny":
        torch.manual_seed(cfg.seed)  # the tiny backbone is a pure function of the seed
        model = Qwen2VLForConditionalGeneration(tiny_config(cfg.tiny, tokenizer))
    else:
        # the checkpoint's config picks the class: Qwen2-VL or Qwen2.5-VL (same processor, same prompt)
        model = AutoModelForImageTextToText.from_pretrained(cfg.path, dtype=torch_dtype(cfg.dtype))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model


def patch_embed_as_linear(model) -> None:
    """Run the vision tower's patch embedding as one matrix product instead of a Conv3d.

    Its kernel equals its stride and the processor hands over exactly one kernel's worth of pixels per
    patch, so the convolution *is* `patches @ W.reshape(dim, -1).T`; on the CPU the Conv3d backward alone
    took ~20% of a tiny-TLA training step. Same weights (the checkpoint is unchanged), same result to float
    rounding."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embed = base.model.visual.patch_embed

    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        w = embed.proj.weight
        return torch.nn.functional.linear(hidden_states.to(w.dtype), w.reshape(w.shape[0], -1))

    embed.forward = forward


def lora_target_regex(targets: tuple[str, ...]) -> str:
    """Full-match regex over module paths: the named linears inside the language model's decoder layers."""
    return rf"{LM_LAYERS}\.(self_attn|mlp)\.({'|'.join(targets)})"


def apply_train_mode(model, cfg: ModelConfig):
    """`full`: every weight trains. `lora`: freeze the backbone, add LoRA adapters on the LM's linears."""
    if cfg.train_mode == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_regex(cfg.lora_targets),  # a str is full-matched against module paths
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)  # freezes every base weight; vision tower + merger stay frozen
    if not cfg.freeze_vision:
        for n, p in model.named_parameters():
            if ".visual." in n:
                p.requires_grad_(True)
    check_adapters(model)
    return model


def check_adapters(model) -> None:
    """Fail loudly if any vision module carries a LoRA adapter."""
    bad = [n for n, _ in model.named_modules() if ".visual." in f".{n}." and "lora_" in n]
    if bad:
        raise RuntimeError(f"LoRA adapters found in the vision tower: {bad[:5]}")


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
