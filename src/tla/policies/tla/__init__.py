"""TLA: Qwen2-VL reads the 3x3 tactile composite and writes the corrective action as text."""

from tla.policies.tla.config import TLAConfig
from tla.policies.tla.policy import TLAPolicy

__all__ = ["TLAConfig", "TLAPolicy"]
