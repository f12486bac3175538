"""Prompt + pixels for the action-as-text policy, VLM-agnostic (the VLM's part is its adapter's).

One sample is the chat [user: the layout's content (text, images, videos) then the instruction;
assistant: the answer], rendered by the adapter's chat template, each image / video placeholder repeated
once per visual token the adapter says it becomes. For Qwen2-VL and the `composite` layout that is

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<|vision_start|><|image_pad|> x N<|vision_end|>{instruction}<|im_end|>\n
    <|im_start|>assistant\n{answer}<|im_end|>

(`adapters/qwen2_vl.py`; other layouts: `layout.py`). The loss sees only `{answer}<end token>`; everything
else is labelled -100.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from tla.data.text import instruction
from tla.policies.preprocess import FramePreprocess, preprocess_frames
from tla.policies.tla.adapters import Visual, VLMAdapter, adapter_for
from tla.policies.tla.layout import LAYOUTS, MEDIA_PER_OBSERVATION, Layout, check_layout

IGNORE = -100


def messages(shape: str, answer: str | None = None, content: list[dict] | None = None,
             text: str | None = None) -> list[dict]:
    """The chat: the user turn is the layout's `content` (default: one image) then the instruction (or
    another question about the touch: `text`, as the pretraining corpus asks)."""
    content = [{"type": "image"}] if content is None else content
    text = instruction(shape) if text is None else text
    msgs = [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


class TLAProcessor:
    """Frames -> (preprocessed) layout images / videos -> model pixel inputs, prompt -> token ids (+ labels),
    batched.

    `image_size` is the side of every layout image or video frame: the composite's for `composite`, each
    frame's for `frames` and `video`. `adapter`: the VLM's (default Qwen2-VL)."""

    def __init__(self, tokenizer, image_size: int, preprocess: FramePreprocess | None = None,
                 layout: str = "composite", adapter: VLMAdapter | None = None):
        self.layout = check_layout(layout, image_size)
        self.adapter = adapter or adapter_for()
        tokenizer.chat_template = self.adapter.chat_template
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.preprocess = preprocess or FramePreprocess()
        self.image_processor = self.adapter.image_processor(image_size)
        self.merge = self.adapter.merge_size
        ids = tokenizer.convert_tokens_to_ids
        self.end_id = ids(self.adapter.end_token)
        self.placeholder_ids = {kind: ids(tok) for kind, tok in self.adapter.placeholders.items()}
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else ids(self.adapter.pad_token)

    # --- pixels ---
    def lay_out(self, observation) -> Layout:
        return LAYOUTS[self.layout](self.frames(observation), self.image_size)

    def frames(self, observation) -> np.ndarray:
        """One observation (8, H, W, 3) uint8 as the vision tower sees it, before the layout."""
        return preprocess_frames(np.asarray(observation), self.preprocess)

    def visual(self, layouts: list[Layout]) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
        """The layouts' images and videos as model inputs (sample-major), and per layout the placeholder
        token count of each image / video in its content order."""
        images = [im for lay in layouts for im in lay.images]
        videos = [v for lay in layouts for v in lay.videos]
        inputs, counts = {}, {}
        for kind, media, encode in (("image", images, self.adapter.encode_images),
                                    ("video", videos, self.adapter.encode_videos)):
            if media:
                enc: Visual = encode(self.image_processor, media)
                inputs.update(enc.inputs)
                counts[kind] = iter(enc.tokens)
        tokens = [[next(counts[c["type"]]) for c in lay.content if c["type"] in self.adapter.placeholders]
                  for lay in layouts]
        return inputs, tokens

    def patch_grid(self) -> tuple[int, int]:
        """(rows, cols) of patches in one layout image or video frame."""
        side = self.image_size // self.adapter.patch_size
        return side, side

    @property
    def position_grids(self) -> int:
        """Patch grids per observation: one per image, one per temporal slice of each video."""
        images, videos, frames = MEDIA_PER_OBSERVATION[self.layout]
        return images + videos * (frames // self.adapter.temporal_patch_size)

    # --- text ---
    def prompt(self, shape: str, n_tokens: int | list[int], content: list[dict] | None = None,
               question: str | None = None) -> str:
        """The chat text up to the answer; the k-th image / video placeholder is repeated n_tokens[k] times
        (an int: one image). `question` replaces the instruction (default: `instruction(shape)`)."""
        counts = [n_tokens] if isinstance(n_tokens, int) else list(n_tokens)
        text = self.tokenizer.apply_chat_template(messages(shape, content=content, text=question),
                                                  tokenize=False, add_generation_prompt=True)
        parts = re.split(f"({'|'.join(map(re.escape, self.adapter.placeholders.values()))})", text)
        if len(parts) != 2 * len(counts) + 1:
            raise ValueError(f"the prompt has {len(parts) // 2} images / videos but {len(counts)} token "
                             "counts")
        return parts[0] + "".join(parts[2 * k + 1] * n + parts[2 * k + 2] for k, n in enumerate(counts))

    def encode(
        self, shape: str, n_tokens: int | list[int], answer: str | None = None,
        content: list[dict] | None = None, question: str | None = None,
    ) -> tuple[list[int], list[int]]:
        """Token ids and labels: the prompt is -100, the answer and its end token are the targets."""
        ids = self.tokenizer(self.prompt(shape, n_tokens, content, question),
                             add_special_tokens=False)["input_ids"]
        labels = [IGNORE] * len(ids)
        if answer is not None:
            ans = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.end_id]
            ids, labels = ids + ans, labels + ans
        return ids, labels

    def _pad(self, seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
        n = max(len(s) for s in seqs)
        rows = [([value] * (n - len(s)) + s) if left else (s + [value] * (n - len(s))) for s in seqs]
        return torch.tensor(rows, dtype=torch.long)

    def batch(
        self, observations, shapes: list[str], answers: list[str] | None = None,
        questions: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training batches (answers given) are right-padded; generation batches are left-padded so every
        prompt ends at the last position, where generation continues. `questions` (one per sample) replace
        the instruction."""
        layouts = [self.lay_out(o) for o in observations]
        pixels, tokens = self.visual(layouts)
        enc = [self.encode(s, tokens[i], answers[i] if answers is not None else None, layouts[i].content,
                           questions[i] if questions is not None else None)
               for i, s in enumerate(shapes)]
        left = answers is None
        ids = self._pad([e[0] for e in enc], self.pad_id, left)
        mask = self._pad([[1] * len(e[0]) for e in enc], 0, left)
        out = {"input_ids": ids, "attention_mask": mask, **pixels,
               **self.adapter.extra_inputs(ids, self.tokenizer)}
        if answers is not None:
            out["labels"] = self._pad([e[1] for e in enc], IGNORE, left)
        return out

    def save(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)
