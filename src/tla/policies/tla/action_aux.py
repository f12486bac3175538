"""An auxiliary action loss for training (an option, `action_aux_weight`; off in both presets).

The TLA answers in text, and its cross-entropy treats '15' and '-15' as equally wrong answers to a label of
'12': nothing in it says that numbers are ordered or that the sign is what matters most. The auxiliary loss
adds that pressure where the answer is decided: a linear head reads the language model's last hidden state
before the answer (the state from which the first answer token is predicted) and regresses the action, smooth
L1 on the action divided by the label caps. The head exists only while training: evaluation, saving and
serving use the text alone, so the saved model folder stays a stock VLM checkpoint.

Shapes: hidden (B, T, D) last-layer states of a right-padded training batch, labels (B, T) with -100 on the
prompt, target (B, 3) actions in mm / mm / deg.
"""

from __future__ import annotations

import torch
from torch import nn

from tla.sim.config import LabelConfig

HEAD_ATTR = "action_aux_head"  # the head's name on the model while it trains (so it checkpoints with it)
_LABELS = LabelConfig()
ACTION_CAPS = (_LABELS.delta, _LABELS.delta, _LABELS.rz_cap)  # the action divided by these is within [-1, 1]
SMOOTH_L1_BETA = 0.1  # in units of the caps: quadratic below 0.1 mm / 0.15 deg, L1 above


def answer_start_states(hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, D): each row's hidden state at the last prompt position (the one that predicts the first answer
    token). Every row must have an answer."""
    has_answer = labels != -100
    if not bool(has_answer.any(dim=1).all()):
        raise ValueError("the auxiliary action loss needs an answer in every training row (labels all -100)")
    first = has_answer.float().argmax(dim=1)  # first answer position (argmax returns the first maximum)
    if bool((first == 0).any()):
        raise ValueError("an answer starts at position 0: there is no prompt state to read the action from")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first - 1]


class ActionAuxHead(nn.Module):
    """Linear read-out of the action from the answer-start state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 3)

    def loss(self, hidden: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Smooth L1 between the head's action and `target` (B, 3), both over the label caps."""
        pred = self.proj(answer_start_states(hidden, labels).float())
        caps = torch.tensor(ACTION_CAPS, device=pred.device, dtype=pred.dtype)
        return nn.functional.smooth_l1_loss(pred, target.to(pred) / caps, beta=SMOOTH_L1_BETA)
