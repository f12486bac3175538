"""The language side of a sample: the instruction prompt and the action codec.

The answer is the action scaled per axis and rounded to integers, written like `[-90, 40, 13]` (or, signed,
`[-90, +40, +13]`: every axis's first token is then its direction, '-', '+' or '0'). With
contact reasoning (answer format "contact_action") the answer first states the contact, in a fixed small
language, then the action: `contact: +x rim, right pad harder, twist ccw; action: [-90, 40, 13]`.
`decode_action` never raises: text that does not parse gives None, and callers count it as a failure.
`answer_pattern` is the grammar of each format (a regular expression), for constrained decoding.
"""

from __future__ import annotations

import re

import numpy as np

from tla.sim.task import INSTRUCTION_TEMPLATE, instruction  # noqa: F401  (re-exported: the prompt's text)

DEFAULT_SCALE = (100.0, 100.0, 100.0)  # mm, mm, degrees -> integers


ANSWER_FORMATS = ("action", "contact_action")
ACTION_PREFIX = "action: "  # what precedes the action in a contact_action answer

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_ACTION_RE = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")


def encode_action(action, scale=DEFAULT_SCALE, signed: bool = False) -> str:
    """(dx, dy, drz) in mm/mm/deg -> '[a, b, c]' with a = round(dx * scale[0]) etc.; `signed` writes a '+'
    before every positive number ('[-90, +40, 0]')."""
    a = np.asarray(action, dtype=np.float64).reshape(3)
    ints = np.rint(a * np.asarray(scale, dtype=np.float64)).astype(np.int64)
    return "[" + ", ".join(f"{int(v):+d}" if signed and v else str(int(v)) for v in ints) + "]"


def decode_action(text: str, scale=DEFAULT_SCALE) -> np.ndarray | None:
    """Parse the first '[a, b, c]' in `text` (after the last 'action: ' when there is one) back to mm/mm/deg;
    None when there is none."""
    if not isinstance(text, str):
        return None
    m = _ACTION_RE.search(text, max(text.rfind(ACTION_PREFIX), 0))
    if m is None:
        return None
    try:
        vals = np.array([float(g) for g in m.groups()], dtype=np.float64)
    except ValueError:
        return None
    if not np.all(np.isfinite(vals)):
        return None
    return vals / np.asarray(scale, dtype=np.float64)


# --- contact reasoning --------------------------------------------------------------------------------
_PAD_WORDS = {"left": "left pad harder", "right": "right pad harder", "even": "pads even"}
_TWIST_WORDS = {"ccw": "twist ccw", "cw": "twist cw", "none": "no twist"}
NO_CONTACT = "contact: none"


def encode_contact(facts) -> str:
    """`tla.sim.contact.ContactFacts` -> 'contact: +x rim, right pad harder, twist ccw' ('contact: none' when
    the attempt touches nothing)."""
    if facts.rim is None:
        return NO_CONTACT
    return f"contact: {facts.rim} rim, {_PAD_WORDS[facts.pad]}, {_TWIST_WORDS[facts.twist]}"


def encode_answer(action, scale=DEFAULT_SCALE, facts=None, signed: bool = False) -> str:
    """The target text: the action alone, or (with `facts`) the contact then the action."""
    text = encode_action(action, scale, signed)
    return text if facts is None else f"{encode_contact(facts)}; {ACTION_PREFIX}{text}"


def check_answer_format(fmt: str) -> str:
    if fmt not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; choose one of {', '.join(ANSWER_FORMATS)}")
    return fmt


def _action_grammar(signed: bool) -> str:
    """What encode_action writes, up to 4 digits (99.99 mm at scale 100)."""
    number = rf"(?:0|{'[-+]' if signed else '-?'}[1-9][0-9]{{0,3}})"
    return rf"\[{number}, {number}, {number}\]"


def answer_pattern(fmt: str, signed: bool = False) -> str:
    """The grammar of an answer format as a regular expression (every answer `encode_answer` writes for
    |action x scale| < 10^4 matches it in full)."""
    import re as _re

    from tla.sim.contact import RIM_SIDES

    if check_answer_format(fmt) == "action":
        return _action_grammar(signed)
    rims = "|".join(_re.escape(r) for r in RIM_SIDES)
    pads, twists = "|".join(_PAD_WORDS.values()), "|".join(_TWIST_WORDS.values())
    contact = rf"contact: (?:none|(?:{rims}) rim, (?:{pads}), (?:{twists}))"
    return rf"{contact}; {_re.escape(ACTION_PREFIX)}{_action_grammar(signed)}"


def longest_answer(fmt: str) -> str:
    """The longest answer of the format (in characters): what a decoding budget must hold."""
    from tla.sim.contact import ContactFacts

    action = (-99.99, -99.99, -99.99)
    if check_answer_format(fmt) == "action":
        return encode_action(action)
    longest = max((ContactFacts("-x+y", pad, twist) for pad in _PAD_WORDS for twist in _TWIST_WORDS),
                  key=lambda f: len(encode_contact(f)))
    return encode_answer(action, facts=longest)


def contact_corpus() -> list[str]:
    """Every contact statement (for a tokenizer's training corpus)."""
    from tla.sim.contact import RIM_SIDES, ContactFacts

    texts = [NO_CONTACT + "; " + ACTION_PREFIX]
    texts += [encode_contact(ContactFacts(r, p, t)) + "; " + ACTION_PREFIX
              for r in RIM_SIDES for p in _PAD_WORDS for t in _TWIST_WORDS]
    return texts
