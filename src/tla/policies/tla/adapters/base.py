"""The adapter interface: what a Hugging Face VLM backbone provides to the action-as-text policy.

The policy itself (`policy.py`, `processing.py`) is VLM-agnostic: it builds the chat from the layout's
content (text, `{"type": "image"}`, `{"type": "video"}` items), encodes the answer as text, masks the
prompt out of the loss, runs beam search and decodes the answer back into an action. Everything that
depends on one VLM family sits behind a `VLMAdapter`:

- tokens: the special tokens of a tiny tokenizer, the turn-end token (the answer's last target, where
  generation stops), the pad token, the placeholder each image / video leaves in the chat text (the
  processor repeats it once per visual token), the chat template;
- pixels: the image processor (saved with the run), how images and videos become model inputs and how many
  placeholder tokens each becomes, extra per-token inputs (e.g. modality ids for multimodal RoPE);
- the model: a tiny random-init backbone, a pretrained one from a local folder, reloading a saved one,
  which module paths LoRA adapts and which parameters are the vision side (frozen in LoRA mode, never
  adapted), the vision tower and its patch embedding (for the position table), optional speed-ups that
  keep the weights.

A new VLM is one file here with a `VLMAdapter` subclass, plus its name in `ADAPTERS` (`__init__.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

if TYPE_CHECKING:
    from tla.policies.tla.config import ModelConfig, TinyBackbone


@dataclass
class Visual:
    """Pixels as model inputs: `inputs` (tensors handed to the model's forward / generate), `tokens` (the
    number of placeholder tokens of each image or video, in the order they were given)."""

    inputs: dict[str, torch.Tensor]
    tokens: list[int]


def torch_dtype(name: str) -> torch.dtype:
    if name == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


class VLMAdapter:
    """One VLM family behind the policy. Stateless: the policy holds one instance per run."""

    name: ClassVar[str]
    # --- tokens ---
    special_tokens: ClassVar[tuple[str, ...]]  # the tiny tokenizer's special tokens
    pad_token: ClassVar[str]  # pads batches when the tokenizer names no pad token
    end_token: ClassVar[str]  # ends a turn: the answer's last target and generation's stop
    placeholders: ClassVar[dict[str, str]]  # content type ("image", "video") -> its placeholder token
    chat_template: ClassVar[str]  # jinja over the messages; writes each placeholder once
    template_texts: ClassVar[tuple[str, ...]]  # the chat format's fixed text (tiny tokenizer's corpus)
    # --- pixels: a patch_size px patch grid, merge_size^2 patches per token, temporal_patch_size frames ---
    patch_size: ClassVar[int]
    merge_size: ClassVar[int]
    temporal_patch_size: ClassVar[int]

    def image_processor(self, image_size: int):
        """The image processor for image_size px square images (saved with the run, exported)."""
        raise NotImplementedError

    def encode_images(self, image_processor, images: list[np.ndarray]) -> Visual:
        """uint8 (h, w, 3) images -> model inputs + placeholder tokens per image."""
        raise NotImplementedError

    def encode_videos(self, image_processor, videos: list[np.ndarray]) -> Visual:
        """uint8 (T, h, w, 3) videos -> model inputs + placeholder tokens per video."""
        raise NotImplementedError(f"the {self.name} adapter has no video input")

    def extra_inputs(self, input_ids: torch.Tensor, tokenizer) -> dict[str, torch.Tensor]:
        """Per-token model inputs computed from the (padded) ids; none by default."""
        return {}

    # --- model ---
    def build(self, cfg: ModelConfig, tokenizer):
        """The backbone: the tiny random-init one (a pure function of cfg.seed) or the pretrained one at
        cfg.path, with generation's pad and end tokens set from the tokenizer. Seeded on both paths: what is
        drawn next (LoRA's A matrices, a position table) also comes from cfg.seed, not from whatever the
        process drew before."""
        torch.manual_seed(cfg.seed)
        if cfg.preset == "tiny":
            model = self.tiny_model(cfg.tiny, tokenizer)
        else:
            model = self.pretrained_model(cfg.path, torch_dtype(cfg.dtype))
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(self.end_token)
        return model

    def tiny_model(self, tiny: TinyBackbone, tokenizer):
        """A small random-init model of the family, its vocabulary the tokenizer's."""
        raise NotImplementedError

    def pretrained_model(self, path: str | Path, dtype: torch.dtype):
        """A local checkpoint folder (nothing is downloaded)."""
        raise NotImplementedError

    def load(self, directory: str | Path, cfg: ModelConfig):
        """A fully trained model saved by the policy (`save_pretrained`)."""
        return self.pretrained_model(directory, torch_dtype(cfg.dtype))

    def lora_target_modules(self, names: tuple[str, ...]) -> str | list[str]:
        """What peft's `target_modules` gets: the language model's linears called `names`, nothing else."""
        raise NotImplementedError

    def is_vision(self, name: str) -> bool:
        """Whether a parameter / module path belongs to the vision side (tower and merger)."""
        raise NotImplementedError

    def vision_tower(self, model) -> torch.nn.Module:
        """The vision tower, through a peft wrapper if there is one."""
        raise NotImplementedError

    def patch_embedding(self, model) -> tuple[torch.nn.Module, int]:
        """The module whose output is (patches, dim) patch embeddings, in the order the pixels came, and
        dim; the position table hooks its output."""
        raise NotImplementedError

    def text_hidden_size(self, model) -> int:
        """Width of the language model's hidden states (Hugging Face configs: `text_config.hidden_size` for
        the VLMs that nest it, else `hidden_size`)."""
        config = model.config
        return int(getattr(getattr(config, "text_config", None), "hidden_size", None) or config.hidden_size)

    def speed_up(self, model) -> None:
        """Optional faster forms of modules that keep weights and results (to float rounding)."""


def unwrap(model):
    """The transformers model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
