"""BC configuration: `BCConfig.preset("tiny" | "paper")`, dotted overrides via `tla.config.apply_overrides`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class BCConfig:
    preset: str = "tiny"
    # input: 8 frames stacked as 24 channels ("stack") or the 3x3 composite ("composite"), resized to (h, w)
    modality: str = "rgb"  # rgb (camera frames), marker_flow or depth: tla.sim.modality
    input_format: str = "stack"
    image_size: tuple[int, int] = (96, 128)
    # ResNet trunk (transformers.ResNetConfig); defaults = tiny
    embedding_size: int = 16
    hidden_sizes: tuple[int, ...] = (16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    layer_type: str = "basic"  # "basic" (ResNet-18/34 blocks) or "bottleneck" (ResNet-50)
    pretrained_dir: str | None = None  # local transformers ResNet checkpoint (3-channel stem is inflated)
    # regression head on the normalised (dx, dy, drz)
    head_hidden: int = 256
    dropout: float = 0.0
    loss: str = "l1"  # "l1" or "mse"
    seed: int = 0  # weight initialisation

    def __post_init__(self):
        # JSON (a Hub config.json) gives lists: keep the declared tuples, so configs compare and hash alike
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    @classmethod
    def preset_config(cls, name: str = "tiny") -> BCConfig:
        if name == "tiny":  # marker flow (see tla.sim.modality): its 12 x 16 field loses nothing at 48 x 64
            return cls(modality="marker_flow", image_size=(48, 64))
        if name == "paper":  # ResNet-50 on the native 240 x 320 frames
            return cls(
                preset="paper",
                image_size=(240, 320),
                embedding_size=64,
                hidden_sizes=(256, 512, 1024, 2048),
                depths=(3, 4, 6, 3),
                layer_type="bottleneck",
                head_hidden=512,
                dropout=0.1,
            )
        raise ValueError(f"unknown BC preset {name!r}; choose 'tiny' or 'paper'")

    def replace(self, **kw) -> BCConfig:
        return dataclasses.replace(self, **kw)
