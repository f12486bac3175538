"""Collapse guard: a learned policy that answers (nearly) the same action for every input has learned
nothing about its input, whatever its loss says. The trainer checks it at every validation, and
`tla reproduce` and `tla ablate` check it on every test split and say so loudly in the report.

Actions are compared at the action text's resolution (0.01 mm / 0.01 deg by default), so a regression
policy whose outputs differ only in the fifth decimal counts as constant too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tla.data.text import DEFAULT_SCALE

COLLAPSE_SHARE = 0.9  # collapsed when the most common answer covers at least this share of the samples


@dataclass(frozen=True)
class CollapseCheck:
    samples: int
    distinct_answers: int
    modal_share: float  # share of samples given the most common answer
    modal_answer: tuple[float, float, float]
    collapsed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self, who: str) -> str:
        return (f"COLLAPSED: {who} gives the same action {list(self.modal_answer)} for "
                f"{100 * self.modal_share:.0f}% of {self.samples} samples ({self.distinct_answers} distinct): "
                "it does not read its input")


def check_collapse(actions, scale=DEFAULT_SCALE, share: float = COLLAPSE_SHARE) -> CollapseCheck:
    """actions (N, 3) in mm/mm/deg -> how concentrated the answers are, at the action text's resolution."""
    a = np.asarray(actions, dtype=np.float64).reshape(-1, 3)
    if len(a) == 0:
        return CollapseCheck(0, 0, float("nan"), (0.0, 0.0, 0.0), False)
    ints = np.rint(np.nan_to_num(a) * np.asarray(scale, dtype=np.float64)).astype(np.int64)
    uniq, counts = np.unique(ints, axis=0, return_counts=True)
    k = int(np.argmax(counts))
    modal = tuple(float(v) for v in uniq[k] / np.asarray(scale, dtype=np.float64))
    modal_share = float(counts[k] / len(a))
    # a handful of samples cannot tell a constant policy from a lucky one
    return CollapseCheck(len(a), len(uniq), modal_share, modal, len(a) >= 8 and modal_share >= share)
