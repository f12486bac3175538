"""Diffusion Policy baseline (Chi et al. 2023, CNN variant): GroupNorm ResNet encoder + FiLM 1-D U-Net."""

from tla.policies.dp.config import DPConfig
from tla.policies.dp.policy import DPPolicy

__all__ = ["DPConfig", "DPPolicy"]
