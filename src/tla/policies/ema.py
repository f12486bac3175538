"""Exponential moving average of a module's weights (Diffusion Policy evaluates the averaged copy)."""

from __future__ import annotations

import copy

import torch


class EMA:
    """Exponential moving average of a module's weights (Chi et al.'s schedule: warm-up, power 0.75).

    decay(step) = clamp(1 - (1 + step / inv_gamma) ** -power, min_value, max_value); 0 for the first step.
    `model` is the averaged copy used for evaluation; buffers are copied from the live module.
    """

    def __init__(
        self, module: torch.nn.Module, power: float = 0.75, max_value: float = 0.9999, inv_gamma=1.0
    ):
        self.model = copy.deepcopy(module).eval().requires_grad_(False)
        self.power, self.max_value, self.inv_gamma = power, max_value, inv_gamma
        self.step = 0

    def decay(self) -> float:
        value = 1 - (1 + self.step / self.inv_gamma) ** -self.power
        return 0.0 if self.step <= 0 else float(min(max(value, 0.0), self.max_value))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = self.decay()
        device = next(module.parameters()).device
        if next(self.model.parameters()).device != device:  # follow the live model (accelerate moves it)
            self.model.to(device)
        for e, p in zip(self.model.parameters(), module.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(self.model.buffers(), module.buffers()):
            e.copy_(b)
        self.step += 1

    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
