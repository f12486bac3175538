"""Prompt + image processing for Qwen2-VL without torchvision.

`AutoProcessor` for Qwen-VL needs torchvision, so the processor is assembled by hand: the Qwen2-VL image
processor's PIL/numpy path + a tokenizer carrying our chat template. One sample is

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<|vision_start|><|image_pad|> x N<|vision_end|>{instruction}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

where N = patches / merge^2 (616 px -> 44 x 44 = 1936 patches -> 484 tokens). The loss sees only
`{answer}<|im_end|>`; everything else is labelled -100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tla.data.text import instruction
from tla.policies.preprocess import FramePreprocess, preprocess_frames
from tla.sim.compose import make_composite

IGNORE = -100
SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2-VL's default system turn, kept for pretrained weights
IMAGE_PAD = "<|image_pad|>"

# Qwen2-VL's chat format: user turn = image then text; assistant turn = the answer.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if loop.first and m.role != 'system' -%}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + m.role + '\\n' }}"
    "{%- if m.content is string -%}{{ m.content }}{%- else -%}{%- for c in m.content -%}"
    "{%- if c.type == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif c.type == 'text' -%}{{ c.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def messages(shape: str, answer: str | None = None) -> list[dict]:
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction(shape)}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


class TLAProcessor:
    """Frames -> (preprocessed) composite -> pixel patches, prompt -> token ids (+ labels), batched."""

    def __init__(self, tokenizer, composite_size: int, preprocess: FramePreprocess | None = None):
        if composite_size % 28:
            raise ValueError(f"composite_size must be a multiple of 28, got {composite_size}")
        tokenizer.chat_template = CHAT_TEMPLATE
        self.tokenizer = tokenizer
        self.composite_size = composite_size
        self.preprocess = preprocess or FramePreprocess()
        # min = max = the composite's area: smart_resize keeps the (already 28-aligned) composite as is
        self.image_processor = Qwen2VLImageProcessorPil(
            min_pixels=composite_size**2, max_pixels=composite_size**2
        )
        self.merge = self.image_processor.merge_size
        ids = tokenizer.convert_tokens_to_ids
        self.im_end_id = ids("<|im_end|>")
        self.image_token_id = ids(IMAGE_PAD)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids("<|endoftext|>")

    # --- image ---
    def images(self, observations) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 8, H, W, 3) uint8 -> pixel_values (sum of patches, 3*2*14*14), image_grid_thw (B, 3)."""
        comps = [make_composite(self.frames(o), self.composite_size) for o in observations]
        out = self.image_processor(images=comps, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def frames(self, observation) -> np.ndarray:
        """One observation (8, H, W, 3) uint8 as the vision tower sees it, before tiling."""
        return preprocess_frames(np.asarray(observation), self.preprocess)

    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of 14 px patches in the composite."""
        side = self.composite_size // self.image_processor.patch_size
        return side, side

    def num_image_tokens(self, grid_thw) -> int:
        t, h, w = (int(v) for v in grid_thw)
        return t * h * w // self.merge**2

    # --- text ---
    def prompt(self, shape: str, n_image_tokens: int) -> str:
        text = self.tokenizer.apply_chat_template(messages(shape), tokenize=False, add_generation_prompt=True)
        return text.replace(IMAGE_PAD, IMAGE_PAD * n_image_tokens)

    def encode(
        self, shape: str, n_image_tokens: int, answer: str | None = None
    ) -> tuple[list[int], list[int]]:
        """Token ids and labels: the prompt is -100, the answer and its <|im_end|> are the targets."""
        ids = self.tokenizer(self.prompt(shape, n_image_tokens), add_special_tokens=False)["input_ids"]
        labels = [IGNORE] * len(ids)
        if answer is not None:
            ans = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.im_end_id]
            ids, labels = ids + ans, labels + ans
        return ids, labels

    def _pad(self, seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
        n = max(len(s) for s in seqs)
        rows = [([value] * (n - len(s)) + s) if left else (s + [value] * (n - len(s))) for s in seqs]
        return torch.tensor(rows, dtype=torch.long)

    def batch(
        self, observations, shapes: list[str], answers: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Training batches (answers given) are right-padded; generation batches are left-padded so every
        prompt ends at the last position, where generation continues."""
        pixel_values, grid = self.images(observations)
        enc = [
            self.encode(s, self.num_image_tokens(g), answers[i] if answers is not None else None)
            for i, (s, g) in enumerate(zip(shapes, grid))
        ]
        left = answers is None
        ids = self._pad([e[0] for e in enc], self.pad_id, left)
        mask = self._pad([[1] * len(e[0]) for e in enc], 0, left)
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "pixel_values": pixel_values,
            "image_grid_thw": grid,
            # modality per token (0 text, 1 image): transformers 5 needs it to lay out M-RoPE positions
            "mm_token_type_ids": (ids == self.image_token_id).long(),
        }
        if answers is not None:
            out["labels"] = self._pad([e[1] for e in enc], IGNORE, left)
        return out

    def save(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
