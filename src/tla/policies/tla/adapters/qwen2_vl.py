"""Qwen2-VL (and Qwen2.5-VL checkpoints) behind the VLM adapter interface, without torchvision.

`AutoProcessor` for Qwen-VL needs torchvision, so the inputs are made by hand: images by Qwen2-VL's
PIL/numpy image processor, videos by the same processor frame by frame, then regrouped into temporal
patches (`video_patches`). One sample reads

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<|vision_start|><|image_pad|> x N<|vision_end|>{instruction}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

where N = patches / merge^2 (616 px -> 44 x 44 = 1936 patches -> 484 tokens); a video is
`<|vision_start|><|video_pad|> x N<|vision_end|>` with N = grid_t * grid_h * grid_w / merge^2.

The pretrained path loads whatever `AutoModelForImageTextToText` finds in the checkpoint: Qwen2-VL or
Qwen2.5-VL (same processor, prompt and module paths; Qwen2.5-VL spaces a video's temporal positions by
its `tokens_per_second`, without `second_per_grid_ts` as if one second per temporal patch). LoRA goes on
the language model's linear layers only, selected by module *path*: Qwen2.5-VL's vision MLP reuses the
names gate/up/down_proj, so bare names would also adapt the vision tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, Qwen2VLConfig, Qwen2VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tla.policies.tla.adapters.base import Visual, VLMAdapter, unwrap

if TYPE_CHECKING:
    from tla.policies.tla.config import TinyBackbone

SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2-VL's default system turn, kept for pretrained weights
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
SPECIAL_TOKENS = (
    "<|endoftext|>",  # pad
    "<|im_start|>",
    "<|im_end|>",  # end of turn = end of the answer (eos)
    "<|vision_start|>",
    "<|vision_end|>",
    IMAGE_PAD,
    VIDEO_PAD,
)

# Qwen2-VL's chat format: the user turn is the content list (text, images, videos), the assistant turn
# the answer; each image / video is one placeholder between vision start and end.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if loop.first and m.role != 'system' -%}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + m.role + '\\n' }}"
    "{%- if m.content is string -%}{{ m.content }}{%- else -%}{%- for c in m.content -%}"
    "{%- if c.type == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif c.type == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif c.type == 'text' -%}{{ c.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Module paths of the language model's decoder layers (transformers >= 4.52 layout) and of the vision side.
LM_LAYERS = r"model\.language_model\.layers\.\d+"
VISION_PREFIX = "model.visual"


def _token_ids(tokenizer) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids(IMAGE_PAD),
        video_token_id=ids(VIDEO_PAD),
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


def patch_embed_as_linear(model) -> None:
    """Run the vision tower's patch embedding as one matrix product instead of a Conv3d.

    Its kernel equals its stride and the processor hands over exactly one kernel's worth of pixels per
    patch, so the convolution *is* `patches @ W.reshape(dim, -1).T`; on the CPU the Conv3d backward alone
    took ~20% of a tiny-TLA training step. Same weights (the checkpoint is unchanged), same result to float
    rounding."""
    embed = unwrap(model).model.visual.patch_embed

    def forward(hidden_states: torch.Tensor) -> torch.Tensor:
        w = embed.proj.weight
        return torch.nn.functional.linear(hidden_states.to(w.dtype), w.reshape(w.shape[0], -1))

    embed.forward = forward


def lora_target_regex(targets: tuple[str, ...]) -> str:
    """Full-match regex over module paths: the named linears inside the language model's decoder layers."""
    return rf"{LM_LAYERS}\.(self_attn|mlp)\.({'|'.join(targets)})"


def video_patches(frame_patches: np.ndarray, frames: int, temporal: int, channels: int = 3,
                  patch: int = 14) -> np.ndarray:
    """One video's patches in the order of transformers' Qwen2-VL video processor, from its frames'
    patches as the image processor gives them.

    frame_patches (frames * n, channels * temporal * patch^2): each frame as an image, frame-major, its n
    patches in merge order, each patch's pixels repeated over the temporal axis (the image path). Out:
    (frames / temporal * n, same width): frames 2k and 2k+1 share the k-th temporal patch, i.e. the video
    processor's (grid_t, merge-ordered patch, channel, frame in the temporal patch, row, col) order."""
    if frames % temporal:
        raise ValueError(f"a video of {frames} frames is not whole temporal patches of {temporal} frames")
    x = frame_patches.reshape(frames // temporal, temporal, -1, channels, temporal, patch, patch)
    x = x[:, :, :, :, 0]  # each frame's pixels once: (grid_t, frame in patch, n, channel, row, col)
    return x.transpose(0, 2, 3, 1, 4, 5).reshape(-1, channels * temporal * patch * patch)


class Qwen2VLAdapter(VLMAdapter):
    name = "qwen2_vl"
    special_tokens = SPECIAL_TOKENS
    pad_token = "<|endoftext|>"
    end_token = "<|im_end|>"
    placeholders: ClassVar[dict[str, str]] = {"image": IMAGE_PAD, "video": VIDEO_PAD}
    chat_template = CHAT_TEMPLATE
    template_texts = (SYSTEM_PROMPT, "system\nuser\nassistant\n")
    patch_size = Qwen2VLImageProcessorPil.patch_size
    merge_size = Qwen2VLImageProcessorPil.merge_size
    temporal_patch_size = Qwen2VLImageProcessorPil.temporal_patch_size

    # --- pixels ---
    def image_processor(self, image_size: int) -> Qwen2VLImageProcessorPil:
        # min = max = the image's area: smart_resize keeps the (already 28-aligned) images as they are
        return Qwen2VLImageProcessorPil(min_pixels=image_size**2, max_pixels=image_size**2)

    def num_tokens(self, grid_thw) -> int:
        t, h, w = (int(v) for v in grid_thw)
        return t * h * w // self.merge_size**2

    def encode_images(self, image_processor, images: list[np.ndarray]) -> Visual:
        out = image_processor(images=images, return_tensors="pt")
        grid = out["image_grid_thw"]
        return Visual({"pixel_values": out["pixel_values"], "image_grid_thw": grid},
                      [self.num_tokens(g) for g in grid])

    def encode_videos(self, image_processor, videos: list[np.ndarray]) -> Visual:
        """Each video (T, h, w, 3) through the image processor frame by frame (same resize, rescale and
        normalisation as an image), then regrouped into temporal patches."""
        out = image_processor(images=[f for v in videos for f in v], return_tensors="np")
        pixels, frame_grids = out["pixel_values"], out["image_grid_thw"]
        chunks, grids, at, frame = [], [], 0, 0
        for v in videos:
            _, gh, gw = (int(x) for x in frame_grids[frame])
            n = len(v) * gh * gw
            chunks.append(video_patches(pixels[at : at + n], len(v), self.temporal_patch_size,
                                        patch=self.patch_size))
            grids.append([len(v) // self.temporal_patch_size, gh, gw])
            at, frame = at + n, frame + len(v)
        grid = torch.tensor(grids, dtype=torch.long)
        inputs = {"pixel_values_videos": torch.from_numpy(np.concatenate(chunks)), "video_grid_thw": grid}
        return Visual(inputs, [self.num_tokens(g) for g in grid])

    def extra_inputs(self, input_ids: torch.Tensor, tokenizer) -> dict[str, torch.Tensor]:
        # modality per token (0 text, 1 image, 2 video): transformers 5 needs it to lay out M-RoPE positions
        ids = tokenizer.convert_tokens_to_ids
        image, video = (input_ids == ids(IMAGE_PAD)).long(), (input_ids == ids(VIDEO_PAD)).long()
        return {"mm_token_type_ids": image + 2 * video}

    # --- model ---
    def tiny_model(self, tiny: TinyBackbone, tokenizer) -> Qwen2VLForConditionalGeneration:
        return Qwen2VLForConditionalGeneration(tiny_config(tiny, tokenizer))

    def pretrained_model(self, path: str | Path, dtype: torch.dtype):
        # the checkpoint's config picks the class: Qwen2-VL or Qwen2.5-VL
        return AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)

    def lora_target_modules(self, names: tuple[str, ...]) -> str:
        return lora_target_regex(names)  # a str is full-matched against module paths

    def is_vision(self, name: str) -> bool:
        return ".visual." in f".{name}."

    def vision_tower(self, model) -> torch.nn.Module:
        return unwrap(model).model.visual

    def patch_embedding(self, model) -> tuple[torch.nn.Module, int]:
        embed = self.vision_tower(model).patch_embed
        return embed, embed.embed_dim

    def speed_up(self, model) -> None:
        patch_embed_as_linear(model)
