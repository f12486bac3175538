"""A learned absolute position table for the VLM's vision tower (an option of the tiny preset).

Qwen2-VL's vision tower has no absolute position embedding: positions enter only through 2D rotary
attention, i.e. as *relative* offsets. Telling which composite cell a patch lies in (left pad or right,
t0 or t3), which the twist error needs (it is a comparison between cells), is then slow to learn for a
random-init tower on a CPU budget. The table adds one learned vector per patch position to the patch
embeddings, before the first block.

Patch order: the image processor emits an image's patches in *merge order*: the 2x2 merge windows
row-major, and inside each window its 4 patches row-major. `merge_order(gh, gw, m)[k]` is the row-major
grid index (row * gw + col) of the k-th emitted patch, so the table is stored row-major (as a picture of
the grid) and gathered into the processor's order. With several images per observation (the `frames`
layout) the table holds one grid per image, in the prompt's image order, so "left t0" and "right t3"
patches get different vectors. A video is one grid per temporal slice (the `video` layout: per pad, t0+t1
then t2+t3), so the table holds one vector per (video, t, h, w) patch position: the video processor emits
a video's patches slice by slice, each slice in the same merge order as an image.

The vision tower and its patch embedding come from the VLM adapter (default Qwen2-VL's).
"""

from __future__ import annotations

import torch
from torch import nn

from tla.policies.tla.adapters import VLMAdapter, adapter_for


def merge_order(grid_h: int, grid_w: int, merge: int = 2) -> torch.Tensor:
    """(grid_h * grid_w,) long: row-major patch index of each patch in the processor's emission order."""
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"patch grid {grid_h}x{grid_w} is not divisible by the merge size {merge}")
    rows = torch.arange(grid_h).view(grid_h // merge, merge, 1, 1)
    cols = torch.arange(grid_w).view(1, 1, grid_w // merge, merge)
    # emission order: (block row, block col, row in block, col in block)
    return (rows * grid_w + cols).permute(0, 2, 1, 3).reshape(-1)


class PatchPositionTable(nn.Module):
    """`weight` (images * grid_h * grid_w, dim), row-major over each image's patch grid, images in prompt
    order; added to every observation's patches."""

    def __init__(self, grid_h: int, grid_w: int, dim: int, merge: int = 2, images: int = 1):
        super().__init__()
        self.grid_h, self.grid_w, self.merge, self.images = grid_h, grid_w, merge, images
        self.weight = nn.Parameter(torch.randn(images * grid_h * grid_w, dim) * 0.02)
        one = merge_order(grid_h, grid_w, merge)
        order = torch.cat([one + k * grid_h * grid_w for k in range(images)])
        self.register_buffer("order", order, persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (n_observations * images * grid_h * grid_w, dim), concatenated -> same shape, table added."""
        per_observation = self.images * self.grid_h * self.grid_w
        if patches.shape[0] % per_observation:
            raise ValueError(
                f"{patches.shape[0]} patches are not whole observations of {self.images} image(s) of "
                f"{self.grid_h}x{self.grid_w} patches: the position table needs every image at the size "
                "it was built for"
            )
        table = self.weight[self.order].to(patches.dtype)
        return patches + table.repeat(patches.shape[0] // per_observation, 1)


VISION_ATTR = "position_table"


def vision_tower(model, adapter: VLMAdapter | None = None) -> nn.Module:
    """The VLM's vision tower, through a PEFT wrapper if there is one."""
    return (adapter or adapter_for()).vision_tower(model)


def attach_position_table(model, grid_h: int, grid_w: int, merge: int = 2, images: int = 1,
                          adapter: VLMAdapter | None = None) -> PatchPositionTable:
    """Register the table on the vision tower (so it trains, moves and checkpoints with the model) and add
    it to the patch embedding's output through a forward hook. `images`: patch grids per observation."""
    adapter = adapter or adapter_for()
    visual = adapter.vision_tower(model)
    existing = getattr(visual, VISION_ATTR, None)
    if existing is not None:
        return existing
    embed, dim = adapter.patch_embedding(model)
    table = PatchPositionTable(grid_h, grid_w, dim, merge, images).to(next(visual.parameters()).device)
    visual.add_module(VISION_ATTR, table)
    embed.register_forward_hook(lambda _m, _inp, out: table(out))
    return table
