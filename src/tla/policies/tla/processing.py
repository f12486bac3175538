"""Prompt + image processing for Qwen2-VL without torchvision.

`AutoProcessor` for Qwen-VL needs torchvision, so the processor is assembled by hand: the Qwen2-VL image
processor's PIL/numpy path + a tokenizer carrying our chat template. One sample is

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<|vision_start|><|image_pad|> x N<|vision_end|>{instruction}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

where N = patches / merge^2 (616 px -> 44 x 44 = 1936 patches -> 484 tokens). That is the `composite`
layout; the `frames` layout puts 8 labelled images in the user turn instead ("left t0:" <image> ...), see
`layout.py`. The loss sees only `{answer}<|im_end|>`; everything else is labelled -100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tla.data.text import instruction
from tla.policies.preprocess import FramePreprocess, preprocess_frames
from tla.policies.tla.layout import IMAGES_PER_OBSERVATION, LAYOUTS, Layout, check_layout

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


def messages(shape: str, answer: str | None = None, content: list[dict] | None = None) -> list[dict]:
    """The chat: the user turn is the layout's `content` (default: one image) then the instruction."""
    content = [{"type": "image"}] if content is None else content
    msgs = [{"role": "user", "content": [*content, {"type": "text", "text": instruction(shape)}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


class TLAProcessor:
    """Frames -> (preprocessed) layout images -> pixel patches, prompt -> token ids (+ labels), batched.

    `image_size` is the side of every layout image: the composite's for `composite`, each frame's for
    `frames`."""

    def __init__(self, tokenizer, image_size: int, preprocess: FramePreprocess | None = None,
                 layout: str = "composite"):
        self.layout = check_layout(layout, image_size)
        tokenizer.chat_template = CHAT_TEMPLATE
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.images_per_observation = IMAGES_PER_OBSERVATION[layout]
        self.preprocess = preprocess or FramePreprocess()
        # min = max = the image's area: smart_resize keeps the (already 28-aligned) images as they are
        self.image_processor = Qwen2VLImageProcessorPil(min_pixels=image_size**2, max_pixels=image_size**2)
        self.merge = self.image_processor.merge_size
        ids = tokenizer.convert_tokens_to_ids
        self.im_end_id = ids("<|im_end|>")
        self.image_token_id = ids(IMAGE_PAD)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids("<|endoftext|>")

    # --- image ---
    def lay_out(self, observation) -> Layout:
        return LAYOUTS[self.layout](self.frames(observation), self.image_size)

    def images(self, observations, layouts: list[Layout] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 8, H, W, 3) uint8 -> pixel_values (sum of patches, 3*2*14*14), image_grid_thw (B * I, 3),
        I = images per observation (1 for the composite, 8 for frames), sample-major."""
        layouts = layouts or [self.lay_out(o) for o in observations]
        out = self.image_processor(images=[im for lay in layouts for im in lay.images], return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def frames(self, observation) -> np.ndarray:
        """One observation (8, H, W, 3) uint8 as the vision tower sees it, before tiling."""
        return preprocess_frames(np.asarray(observation), self.preprocess)

    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of 14 px patches in one layout image."""
        side = self.image_size // self.image_processor.patch_size
        return side, side

    def num_image_tokens(self, grid_thw) -> int:
        t, h, w = (int(v) for v in grid_thw)
        return t * h * w // self.merge**2

    # --- text ---
    def prompt(self, shape: str, n_image_tokens: int | list[int], content: list[dict] | None = None) -> str:
        """The chat text up to the answer; the k-th image's <|image_pad|> is repeated n_image_tokens[k]
        times (an int: one image)."""
        counts = [n_image_tokens] if isinstance(n_image_tokens, int) else list(n_image_tokens)
        text = self.tokenizer.apply_chat_template(messages(shape, content=content), tokenize=False,
                                                  add_generation_prompt=True)
        parts = text.split(IMAGE_PAD)
        if len(parts) != len(counts) + 1:
            raise ValueError(f"the prompt has {len(parts) - 1} images but {len(counts)} token counts")
        return parts[0] + "".join(IMAGE_PAD * n + p for n, p in zip(counts, parts[1:]))

    def encode(
        self, shape: str, n_image_tokens: int | list[int], answer: str | None = None,
        content: list[dict] | None = None,
    ) -> tuple[list[int], list[int]]:
        """Token ids and labels: the prompt is -100, the answer and its <|im_end|> are the targets."""
        ids = self.tokenizer(self.prompt(shape, n_image_tokens, content), add_special_tokens=False)["input_ids"]
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
        layouts = [self.lay_out(o) for o in observations]
        pixel_values, grid = self.images(observations, layouts)
        per = self.images_per_observation
        enc = [
            self.encode(s, [self.num_image_tokens(g) for g in grid[i * per : (i + 1) * per]],
                        answers[i] if answers is not None else None, layouts[i].content)
            for i, s in enumerate(shapes)
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
