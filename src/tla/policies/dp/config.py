"""Diffusion Policy configuration: `DPConfig.preset_config("tiny" | "paper")`, dotted overrides via
`tla.config.apply_overrides`.

Action horizon: the task has a single corrective action per observation, but the U-Net halves the
sequence length at every level but the last, so the action is repeated over a short horizon
(`horizon` = 2 ** (len(down_dims) - 1) = 4 for three levels; Chi et al. likewise pad sequences by
repeating the edge action), denoised as a sequence, and the first element is returned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DPConfig:
    preset: str = "tiny"
    modality: str = "rgb"  # rgb (camera frames), marker_flow or depth: tla.sim.modality
    input_format: str = "stack"  # see tla.policies.frames
    image_size: tuple[int, int] = (96, 128)
    # tactile encoder: transformers ResNet with every BatchNorm replaced by GroupNorm (16 channels/group)
    embedding_size: int = 16
    hidden_sizes: tuple[int, ...] = (16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    layer_type: str = "basic"
    # conditional 1-D U-Net
    horizon: int = 4
    down_dims: tuple[int, ...] = (32, 64, 128)
    diffusion_step_embed_dim: int = 32
    kernel_size: int = 5
    n_groups: int = 8
    # DDPM
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    noise_samples: int = 4  # noise draws per observation per step (encoder runs once); lowers loss variance
    sampler: str = "ddim"  # "ddpm" (all num_train_timesteps steps) or "ddim" (ddim_steps steps, eta 0)
    ddim_steps: int = 10
    # EMA of the weights, used by predict
    use_ema: bool = True
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    seed: int = 0  # weight initialisation and the sampler's noise (a fresh generator per predict call)

    def __post_init__(self):
        # JSON (a Hub config.json) gives lists: keep the declared tuples, so configs compare and hash alike
        for f in dataclasses.fields(self):
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))

    @classmethod
    def preset_config(cls, name: str = "tiny") -> DPConfig:
        if name == "tiny":  # marker flow, as BC and TLA on this preset; 48 x 64 holds its 12 x 16 field
            return cls(modality="marker_flow", image_size=(48, 64))
        if name == "paper":  # Chi et al.'s image setting: ResNet-18 (GroupNorm) encoder, U-Net 512/1024/2048
            return cls(
                preset="paper",
                image_size=(240, 320),
                embedding_size=64,
                hidden_sizes=(64, 128, 256, 512),
                depths=(2, 2, 2, 2),
                down_dims=(512, 1024, 2048),
                diffusion_step_embed_dim=128,
                noise_samples=1,
            )
        raise ValueError(f"unknown DP preset {name!r}; choose 'tiny' or 'paper'")

    def replace(self, **kw) -> DPConfig:
        return dataclasses.replace(self, **kw)
