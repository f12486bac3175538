"""Behaviour cloning baseline: ResNet trunk (transformers.ResNetModel) + regression head."""

from tla.policies.bc.config import BCConfig
from tla.policies.bc.policy import BCPolicy

__all__ = ["BCConfig", "BCPolicy"]
