"""The tactile-language pretraining corpus: questions and captions about the contact of simulated attempts.

Every sample is one failed insertion attempt of a peg shape that no evaluation uses
(`tla.sim.geometry.PRETRAIN_SHAPES`: rectangles of two aspect ratios, an ellipse, a heptagon, an octagon) at
clearances that no evaluation uses (`PRETRAIN_CLEARANCES`), so Table III's clearances and Table IV's unseen
shapes stay unseen. Each attempt is asked every question kind once, in a wording drawn from templates:

    rim      Where does the peg touch the rim?             -> the +x-y rim          (8 sectors)
    pad      Which gel pad presses harder?                 -> the left pad          (left / right / even)
    twist    Which way does the peg turn in the grasp?     -> clockwise             (ccw / cw / none)
    error    Estimate the pose error in numbers.           -> x +1.4 mm, y -0.6 mm, rz +2.1 deg
    size     Describe the misalignment in words.           -> x far +, y slightly -, rz centred
    insert   Would the move [-140, 60, -210] insert the peg? -> yes                 (geometry, half near-correct moves)
    caption  Describe the contact.                          -> contact: +x-y rim, left pad harder, twist cw

The facts come from the simulator (`tla.sim.contact`), the numbers from the pose error, the insert answer from
the insertion geometry after the move (the move is written like an action answer, so the model meets action
text paired with its effect). Everything is a pure function of (seed, split, attempt, kind): the corpus
regenerates exactly, and the on-disk cache is only a speed-up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tla.config import to_dict
from tla.data.text import encode_action, encode_contact
from tla.sim import geometry as geo

# every evaluation clearance is 2.0, 1.6, 1.0 or 0.6 mm (Table III); these are none of them
PRETRAIN_CLEARANCES = (2.4, 1.8, 1.3, 0.8)
EVALUATION_CLEARANCES = (2.0, 1.6, 1.0, 0.6)
KINDS = ("rim", "pad", "twist", "error", "size", "insert", "caption")
SPLITS = {"train": 0, "heldout": 1}

QUESTIONS = {
    "rim": ("Where does the peg touch the rim?", "Which side of the hole's rim is the {shape} peg on?",
            "Name the part of the rim in contact."),
    "pad": ("Which gel pad presses harder?", "Which finger feels the larger force?",
            "Is the left or the right pad pressed harder?"),
    "twist": ("Which way does the peg turn in the grasp?", "Does the {shape} peg twist, and which way?",
              "Name the peg's twist between the fingers."),
    "error": ("Estimate the pose error in numbers.", "How far off is the {shape} peg, in mm and degrees?",
              "Give the misalignment as numbers."),
    "size": ("Describe the misalignment in words.", "How large is the error along each axis?",
             "Is the {shape} peg far off or close?"),
    "insert": ("Would the move {move} insert the peg?", "If the robot moves by {move}, does the peg go in?",
               "Does {move} put the {shape} peg in the hole?"),
    "caption": ("Describe the contact.", "What do the tactile sensors feel?", "Summarise the touch."),
}
PAD_ANSWERS = {"left": "the left pad", "right": "the right pad", "even": "both pads evenly"}
TWIST_ANSWERS = {"ccw": "counter-clockwise", "cw": "clockwise", "none": "no twist"}
SIZE_WORDS = ("centred", "slightly +", "slightly -", "far +", "far -")
FAR_MM, SMALL_DEG, FAR_DEG = 1.5, 1.0, 3.0


@dataclass
class CorpusConfig:
    shapes: tuple[str, ...] = geo.PRETRAIN_SHAPES
    clearances: tuple[float, ...] = PRETRAIN_CLEARANCES
    # training attempts; each gives one sample per question kind. The tiny TLA needs thousands of samples
    # per condition before it reads the touch (4000 single-rectangle attempts at 1.8 mm: one constant answer
    # after 1250 steps; 6000 square ones at 2.0 mm: learning by step 500)
    attempts: int = 10000
    kinds: tuple[str, ...] = KINDS  # the question kinds asked of every attempt
    heldout_attempts: int = 300  # held-out attempts (other seeds, same shapes): the accuracy check
    modality: str = "marker_flow"  # a stored-field modality (marker_flow or depth): rgb frames are not cached
    seed: int = 0
    # SimConfig overrides; the tiny dataset's half-resolution frames (the tiny model sees a 168 px composite)
    sim_overrides: tuple[str, ...] = ("render.height=120", "render.width=160")

    def validate(self) -> CorpusConfig:
        from tla.sim.modality import FIELD_MODALITIES

        bad = [s for s in self.shapes if s not in geo.PRETRAIN_SHAPES]
        if bad:
            raise ValueError(f"the pretraining corpus uses only shapes no evaluation uses "
                             f"({', '.join(geo.PRETRAIN_SHAPES)}); got {', '.join(bad)}")
        clash = [c for c in self.clearances if any(abs(float(c) - e) < 1e-9 for e in EVALUATION_CLEARANCES)]
        if clash or not self.clearances:
            raise ValueError(f"corpus.clearances must be non-empty and avoid the evaluation clearances "
                             f"{EVALUATION_CLEARANCES}; got {self.clearances}")
        for c in self.clearances:
            geo.check_clearance(c)
        if self.modality not in FIELD_MODALITIES:
            raise ValueError(f"corpus.modality must be one of {', '.join(FIELD_MODALITIES)} (stored fields); "
                             f"got {self.modality!r}")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"corpus.kinds must name question kinds of {', '.join(KINDS)}; got {self.kinds}")
        if self.attempts < 1 or self.heldout_attempts < 1:
            raise ValueError("corpus.attempts and corpus.heldout_attempts must be >= 1")
        return self


def sim_config(cfg: CorpusConfig):
    from tla.config import apply_overrides
    from tla.sim.config import SimConfig

    return apply_overrides(SimConfig(), list(cfg.sim_overrides))


# --- one attempt -> its answers -------------------------------------------------------------------------
def size_word(value: float, small: float, far: float) -> str:
    if abs(value) <= small:
        return "centred"
    return ("slightly " if abs(value) <= far else "far ") + ("+" if value > 0 else "-")


def describe_size(error, clearance: float) -> str:
    ex, ey, erz = (float(v) for v in error)
    return (f"x {size_word(ex, clearance / 2, FAR_MM)}, y {size_word(ey, clearance / 2, FAR_MM)}, "
            f"rz {size_word(erz, SMALL_DEG, FAR_DEG)}")


def describe_error(error) -> str:
    ex, ey, erz = (float(v) for v in error)
    return f"x {ex:+.1f} mm, y {ey:+.1f} mm, rz {erz:+.1f} deg"


def draw_move(rng: np.random.Generator, error: np.ndarray, clearance: float) -> np.ndarray:
    """Half the moves are near the correction (they mostly insert), half are random (they mostly do not);
    rounded to what the move's text says."""
    if rng.random() < 0.5:
        move = -error + rng.uniform([-clearance / 3, -clearance / 3, -0.6], [clearance / 3, clearance / 3, 0.6])
    else:
        move = rng.uniform([-2.0, -2.0, -5.0], [2.0, 2.0, 5.0])
    return np.rint(move * 100) / 100


def question_answer(kind: str, shape: str, clearance: float, error: np.ndarray, facts, rng: np.random.Generator,
                    geometry) -> tuple[str, str]:
    """One (question, answer) of `kind` about an attempt."""
    template = QUESTIONS[kind][int(rng.integers(len(QUESTIONS[kind])))]
    move_text = ""
    if kind == "rim":
        answer = f"the {facts.rim} rim"
    elif kind == "pad":
        answer = PAD_ANSWERS[facts.pad]
    elif kind == "twist":
        answer = TWIST_ANSWERS[facts.twist]
    elif kind == "error":
        answer = describe_error(error)
    elif kind == "size":
        answer = describe_size(error, clearance)
    elif kind == "insert":
        move = draw_move(rng, error, clearance)
        move_text = encode_action(move)
        goes_in = geo.inserts(shape, clearance, error + move, geometry.peg_size, geometry.insert_area_tol,
                              geometry.circle_segments)
        answer = "yes" if goes_in else "no"
    elif kind == "caption":
        answer = encode_contact(facts)
    else:
        raise ValueError(f"unknown question kind {kind!r}; choose one of {', '.join(KINDS)}")
    return template.format(shape=shape, move=move_text), answer


# --- the corpus -----------------------------------------------------------------------------------------
def _attempt_rng(cfg: CorpusConfig, split: str, attempt: int, part: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS[split], attempt, part]))


def simulate_corpus(cfg: CorpusConfig, split: str, progress: bool = True) -> dict[str, np.ndarray]:
    """The attempts of one split: stored fields, shape, clearance, error, label and contact facts."""
    from tla.progress import progress_bar
    from tla.sim import modality
    from tla.sim.contact import contact_facts
    from tla.sim.labels import draw_colliding_error
    from tla.sim.simulator import simulate_attempt

    cfg.validate()
    sim_cfg = sim_config(cfg)
    n = cfg.attempts if split == "train" else cfg.heldout_attempts
    cols: dict[str, list] = {k: [] for k in ("field", "shape", "clearance", "error", "action", "rim", "pad",
                                              "twist")}
    with progress_bar(f"corpus {split}", "attempts", enabled=progress) as bar:
        task = bar.add_task(split, total=n)
        for a in range(n):
            rng = _attempt_rng(cfg, split, a, 0)
            shape = cfg.shapes[a % len(cfg.shapes)]
            clearance = float(cfg.clearances[int(rng.integers(len(cfg.clearances)))])
            error = draw_colliding_error(rng, sim_cfg.errors,
                                         partial(geo.collides, shape, clearance, g=sim_cfg.geometry),
                                         what=f"{shape}, clearance {clearance} mm")
            res = simulate_attempt(sim_cfg, shape, clearance, error, rng)
            facts = contact_facts(shape, clearance, error)
            cols["field"].append(modality.field(res, sim_cfg.render, cfg.modality).astype(modality.STORAGE_DTYPE))
            cols["shape"].append(shape)
            cols["clearance"].append(clearance)
            cols["error"].append(np.asarray(error, np.float64))
            cols["action"].append(np.asarray(res.label, np.float64))
            for k in ("rim", "pad", "twist"):
                cols[k].append(getattr(facts, k))
            bar.advance(task)
    return {k: np.asarray(v) for k, v in cols.items()}


def corpus_key(cfg: CorpusConfig, split: str) -> str:
    """What a cached split's attempts were made from (the config but the question kinds, which only change
    the questions asked of them; the package version)."""
    import tla

    made_from = {k: v for k, v in to_dict(cfg).items() if k != "kinds"}
    text = json.dumps({"corpus": made_from, "split": split, "tla": tla.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_corpus(cfg: CorpusConfig, split: str, cache_dir: str | Path | None = None,
                progress: bool = True) -> CorpusDataset:
    """The split, from `cache_dir/{split}-{key}.npz` when it is there (same config), else simulated (and
    cached atomically). A cache file that does not read is regenerated."""
    arrays = None
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{split}-{corpus_key(cfg, split)}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as f:
                    arrays = {k: f[k] for k in f.files}
            except Exception as exc:  # noqa: BLE001 - a torn or corrupt cache is rebuilt, loudly
                print(f"warning: the corpus cache {path} does not read ({exc}); regenerating it")
    if arrays is None:
        arrays = simulate_corpus(cfg, split, progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            tmp.replace(path)
    return CorpusDataset(cfg, split, arrays)


class CorpusDataset(torch.utils.data.Dataset):
    """Items = attempts x question kinds (kind-minor). An item: `frames` uint8 (8, H, W, 3) in the corpus
    modality, `shape`, `question`, `answer`, `kind`, and the attempt's `clearance`, `error`, `action` and
    `episode_index` (= the attempt: the trainer's validation split keeps an attempt's questions together)."""

    def __init__(self, cfg: CorpusConfig, split: str, arrays: dict[str, np.ndarray]):
        self.cfg, self.split, self.arrays = cfg, split, arrays
        self.sim_cfg = sim_config(cfg)
        self.attempts = len(arrays["shape"])
        self.kinds = tuple(cfg.kinds)
        self.episode_indices = np.repeat(np.arange(self.attempts), len(self.kinds))

    def __len__(self) -> int:
        return self.attempts * len(self.kinds)

    def facts(self, attempt: int):
        from tla.sim.contact import ContactFacts

        a = self.arrays
        rim = str(a["rim"][attempt])
        return ContactFacts(rim=None if rim == "None" else rim, pad=str(a["pad"][attempt]),
                            twist=str(a["twist"][attempt]))

    def question(self, i: int) -> dict:
        """Item `i` without its frames (no rendering)."""
        attempt, k = divmod(int(i), len(self.kinds))
        a = self.arrays
        shape, clearance = str(a["shape"][attempt]), float(a["clearance"][attempt])
        error = np.asarray(a["error"][attempt], np.float64)
        kind = self.kinds[k]
        q, ans = question_answer(kind, shape, clearance, error, self.facts(attempt),  # same draws per kind
                                 _attempt_rng(self.cfg, self.split, attempt, 1 + KINDS.index(kind)),
                                 self.sim_cfg.geometry)
        return {"shape": shape, "question": q, "answer": ans, "kind": kind, "clearance": clearance,
                "error": error, "action": np.asarray(a["action"][attempt], np.float64), "episode_index": attempt}

    def __getitem__(self, i: int) -> dict:
        from tla.sim.modality import render_field

        item = self.question(i)
        rc = self.sim_cfg.render
        item["frames"] = render_field(self.cfg.modality, self.arrays["field"][item["episode_index"]],
                                      (rc.height, rc.width))
        return item


def corpus_texts(cfg: CorpusConfig, samples: int = 400) -> list[str]:
    """Texts for the tokenizer: every question template with every shape and a spread of moves, every
    categorical answer, and a deterministic spread of numeric answers. Needs no simulation."""
    from tla.sim.contact import PADS, RIM_SIDES, TWISTS, ContactFacts

    rng = np.random.default_rng([cfg.seed, 99])
    texts = []
    for templates in QUESTIONS.values():
        for t in templates:
            for s in cfg.shapes:
                texts.append(t.format(shape=s, move=encode_action(rng.uniform(-2, 2, 3))))
    texts += [f"the {r} rim" for r in RIM_SIDES] + list(PAD_ANSWERS.values()) + list(TWIST_ANSWERS.values())
    texts += ["yes", "no"] + [f"x {a}, y {b}, rz {c}" for a in SIZE_WORDS for b in SIZE_WORDS for c in SIZE_WORDS]
    for _ in range(samples):
        texts.append(describe_error(rng.uniform([-2.5, -2.5, -5], [2.5, 2.5, 5])))
    texts += [encode_contact(ContactFacts(r, p, t)) for r in RIM_SIDES for p in PADS for t in TWISTS]
    return texts


def describe(cfg: CorpusConfig) -> dict:
    """The config (the held-out check rebuilds the corpus from it) and what a reader of the card needs."""
    return {**to_dict(cfg), "questions": {k: list(QUESTIONS[k]) for k in cfg.kinds},
            "evaluation_shapes_excluded": list(geo.SHAPES),
            "evaluation_clearances_excluded": list(EVALUATION_CLEARANCES)}
