"""The language side of a sample: the instruction prompt and the action codec.

The answer is the action scaled per axis and rounded to integers, written like `[-90, 40, 13]`.
`decode_action` never raises: text that does not parse gives None, and callers count it as a failure.
"""

from __future__ import annotations

import re

import numpy as np

from tla.sim.task import INSTRUCTION_TEMPLATE, instruction  # noqa: F401  (re-exported: the prompt's text)

DEFAULT_SCALE = (100.0, 100.0, 100.0)  # mm, mm, degrees -> integers


_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_ACTION_RE = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")


def encode_action(action, scale=DEFAULT_SCALE) -> str:
    """(dx, dy, drz) in mm/mm/deg -> '[a, b, c]' with a = round(dx * scale[0]) etc."""
    a = np.asarray(action, dtype=np.float64).reshape(3)
    ints = np.rint(a * np.asarray(scale, dtype=np.float64)).astype(np.int64)
    return "[" + ", ".join(str(int(v)) for v in ints) + "]"


def decode_action(text: str, scale=DEFAULT_SCALE) -> np.ndarray | None:
    """Parse the first '[a, b, c]' in `text` back to mm/mm/deg; None when there is none."""
    if not isinstance(text, str):
        return None
    m = _ACTION_RE.search(text)
    if m is None:
        return None
    try:
        vals = np.array([float(g) for g in m.groups()], dtype=np.float64)
    except ValueError:
        return None
    if not np.all(np.isfinite(vals)):
        return None
    return vals / np.asarray(scale, dtype=np.float64)
