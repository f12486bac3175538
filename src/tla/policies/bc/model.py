"""BC network: a transformers ResNet trunk (random init, or a local pretrained checkpoint) and an MLP head
regressing the normalised action (dx, dy, drz).

`BCNet` is a `huggingface_hub.PyTorchModelHubMixin`: `save_pretrained(folder)` writes `model.safetensors` +
`config.json` (the `BCConfig` under "cfg"), `BCNet.from_pretrained(folder)` rebuilds it. The policy-level
`BCPolicy.save_pretrained` adds the action normaliser and what the run was trained on to that config.
"""

# no `from __future__ import annotations`: the hub mixin reads the real `BCConfig` annotation of
# `__init__` to rebuild the config from config.json
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import ResNetConfig, ResNetModel

from tla.policies.bc.config import BCConfig
from tla.policies.frames import ACTION_DIM, in_channels


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


HUB_TAGS = ["robotics", "tactile", "peg-in-hole", "tla"]


class BCNet(nn.Module, PyTorchModelHubMixin, library_name="tla", tags=[*HUB_TAGS, "behavior-cloning"],
            license="apache-2.0", pipeline_tag="robotics"):
    """Trunk (random init, or the local `cfg.pretrained_dir` checkpoint) + head. `BCPolicy.save_pretrained`
    publishes the config without `pretrained_dir`: a net rebuilt from the Hub never looks for that folder."""

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
