"""Diffusion Policy networks (Chi et al. 2023, CNN variant), written from the paper's description.

- TactileEncoder: transformers ResNet (random init), BatchNorm -> GroupNorm, global average pool.
- ConditionalUnet1D: 1-D temporal U-Net over the action sequence; every residual block is FiLM-conditioned
  (per-channel scale and bias) on [diffusion-step embedding, observation features].

`DiffusionNet` is a `huggingface_hub.PyTorchModelHubMixin` (`save_pretrained` / `from_pretrained`, the
`DPConfig` under "cfg" in config.json); `DPPolicy.save_pretrained` publishes the EMA weights predict uses.
"""

# no `from __future__ import annotations`: the hub mixin reads the real `DPConfig` annotation of
# `DiffusionNet.__init__` to rebuild the config from config.json
import itertools
import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import ResNetModel

from tla.policies.bc.model import resnet_config
from tla.policies.dp.config import DPConfig
from tla.policies.frames import ACTION_DIM, in_channels


def batchnorm_to_groupnorm(module: nn.Module, channels_per_group: int = 16) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(max(1, c // channels_per_group), c))
        else:
            batchnorm_to_groupnorm(child, channels_per_group)
    return module


class TactileEncoder(nn.Module):
    def __init__(self, cfg: DPConfig):
        super().__init__()
        self.resnet = batchnorm_to_groupnorm(ResNetModel(resnet_config(cfg, in_channels(cfg.input_format))))
        self.out_dim = cfg.hidden_sizes[-1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.resnet(obs).pooler_output.flatten(1)


class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * (-math.log(10000) / (half - 1)))
        x = t.float()[:, None] * freqs[None]
        return torch.cat([x.sin(), x.cos()], dim=-1)


def conv_block(cin: int, cout: int, k: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(groups, cout), nn.Mish())


class ConditionalResBlock1D(nn.Module):
    """Two conv blocks; the first's output is modulated by FiLM: scale * x + bias, from the condition."""

    def __init__(self, cin: int, cout: int, cond_dim: int, k: int, groups: int):
        super().__init__()
        self.block1, self.block2 = conv_block(cin, cout, k, groups), conv_block(cout, cout, k, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.residual = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = self.block2(scale * self.block1(x) + bias)
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(
        self, input_dim: int, global_cond_dim: int, step_embed_dim: int, down_dims, k: int, groups: int
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        dims = [input_dim, *down_dims]
        pairs = list(itertools.pairwise(dims))
        res = lambda i, o: ConditionalResBlock1D(i, o, cond_dim, k, groups)
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        res(cin, cout),
                        res(cout, cout),
                        nn.Identity() if last else nn.Conv1d(cout, cout, 3, 2, 1),
                    ]
                )
            )
        self.mid = nn.ModuleList([res(dims[-1], dims[-1]), res(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):  # as in Chi et al.: every up level upsamples
            self.up.append(
                nn.ModuleList([res(2 * cout, cin), res(cin, cin), nn.ConvTranspose1d(cin, cin, 4, 2, 1)])
            )
        self.final = nn.Sequential(
            conv_block(down_dims[0], down_dims[0], k, groups), nn.Conv1d(down_dims[0], input_dim, 1)
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        """sample (B, T, input_dim), timestep (B,) int, global_cond (B, D) -> (B, T, input_dim)."""
        cond = torch.cat([self.step_encoder(timestep.expand(sample.shape[0])), global_cond], dim=-1)
        x, skips = sample.transpose(1, 2), []  # the finest-level skip is unused, as in the original
        for r1, r2, down in self.down:
            x = r2(r1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for r in self.mid:
            x = r(x, cond)
        for r1, r2, up in self.up:
            x = r2(r1(torch.cat([x, skips.pop()], dim=1), cond), cond)
            x = up(x)
        return self.final(x).transpose(1, 2)


class DiffusionNet(nn.Module, PyTorchModelHubMixin, library_name="tla", license="apache-2.0",
                   pipeline_tag="robotics", tags=["robotics", "tactile", "peg-in-hole", "tla", "diffusion-policy"]):
    """Tactile encoder + noise-prediction U-Net: eps = net(obs, noisy_actions, t)."""

    def __init__(self, cfg: DPConfig):
        super().__init__()
        self.encoder = TactileEncoder(cfg)
        self.unet = ConditionalUnet1D(
            ACTION_DIM,
            self.encoder.out_dim,
            cfg.diffusion_step_embed_dim,
            cfg.down_dims,
            cfg.kernel_size,
            cfg.n_groups,
        )

    def forward(
        self, obs: torch.Tensor, sample: torch.Tensor, timestep: torch.Tensor, repeat: int = 1
    ) -> torch.Tensor:
        """obs (B, C, h, w); sample (repeat * B, T, 3): the observation features are tiled `repeat` times."""
        return self.unet(sample, timestep, self.encoder(obs).repeat(repeat, 1))
