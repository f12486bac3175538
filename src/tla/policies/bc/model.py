"""BC network: a transformers ResNet trunk (random init, or a local pretrained checkpoint) and an MLP head
regressing the normalised action (dx, dy, drz)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

from tla.policies.bc.config import BCConfig
from tla.policies.common import ACTION_DIM, in_channels


def resnet_config(cfg, num_channels: int) -> ResNetConfig:
    return ResNetConfig(
        num_channels=num_channels,
        embedding_size=cfg.embedding_size,
        hidden_sizes=list(cfg.hidden_sizes),
        depths=list(cfg.depths),
        layer_type=cfg.layer_type,
    )


def load_pretrained_trunk(trunk: ResNetModel, directory: str) -> None:
    """Copy a local ResNet checkpoint into `trunk`; an RGB stem is inflated to 24 channels (repeat, / 8)."""
    src = ResNetModel.from_pretrained(directory, local_files_only=True).state_dict()
    dst = trunk.state_dict()
    for k, v in src.items():
        if k in dst and v.shape != dst[k].shape and v.ndim == 4 and dst[k].shape[1] % v.shape[1] == 0:
            rep = dst[k].shape[1] // v.shape[1]
            src[k] = v.repeat(1, rep, 1, 1) / rep
    trunk.load_state_dict(src)


class BCNet(nn.Module):
    def __init__(self, cfg: BCConfig):
        super().__init__()
        self.trunk = ResNetModel(resnet_config(cfg, in_channels(cfg.input_format)))
        if cfg.pretrained_dir:
            load_pretrained_trunk(self.trunk, cfg.pretrained_dir)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden_sizes[-1], cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, ACTION_DIM),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, C, h, w) in [-1, 1] -> normalised action (B, 3)."""
        return self.head(self.trunk(obs).pooler_output.flatten(1))
