"""The observation contract: what one tactile observation is, stated once.

An observation is a uint8 array (pads * steps, height, width, 3): pad-major frames (left t0..t3, then
right t0..t3; `tla.sim.compose`) of one `modality` (`tla.sim.modality`). The simulator's env, the dataset,
every trained policy and the server each carry an `ObservationSpec`; a policy records the spec it was
trained on (with the simulator config that rendered it) beside its weights, so evaluation and serving
never need the training dataset, and a mismatch is an error that names both specs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tla.sim.compose import NUM_PADS, NUM_STEPS, PAD_NAMES
from tla.sim.modality import check_modality

CHANNELS = {
    "rgb": "camera RGB",
    "marker_flow": "red/green = 128 + 127 * marker displacement u/v / 1.6 mm (image axes), blue = |d|",
    "depth": "grey = 255 * gel indentation / 0.4 mm",
}


@dataclass(frozen=True)
class ObservationSpec:
    height: int
    width: int
    modality: str = "rgb"
    pads: int = NUM_PADS
    steps: int = NUM_STEPS

    def __post_init__(self):
        check_modality(self.modality)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"observation frames must be at least 1x1 px, got {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.pads * self.steps, self.height, self.width, 3)

    @property
    def frame_names(self) -> list[str]:
        return [f"{PAD_NAMES[p]}_t{t}" for p in range(self.pads) for t in range(self.steps)]

    def describe(self) -> str:
        return (f"{self.modality} {self.height}x{self.width}, {self.pads} pads x {self.steps} steps "
                f"({CHANNELS[self.modality]})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ObservationSpec:
        return cls(**{k: d[k] for k in ("height", "width", "modality", "pads", "steps") if k in d})

    @classmethod
    def of_sim(cls, sim_cfg, modality: str = "rgb") -> ObservationSpec:
        """What the simulator renders with `sim_cfg` (a `SimConfig`) in `modality`."""
        return cls(sim_cfg.render.height, sim_cfg.render.width, modality, NUM_PADS, sim_cfg.motion.frames)

    def check(self, observations: np.ndarray) -> np.ndarray:
        """A batch (B, *shape) or one observation (*shape), uint8; else ValueError naming this spec."""
        obs = np.asarray(observations)
        if obs.shape[-4:] != self.shape or obs.ndim not in (4, 5) or obs.dtype != np.uint8:
            raise ValueError(f"observation {obs.dtype} {obs.shape} does not match the spec {self.describe()}: "
                             f"expected uint8 {self.shape} per observation")
        return obs


def check_same_spec(policy_spec: ObservationSpec | None, data_spec: ObservationSpec | None, what: str) -> None:
    """A policy meets observations of the spec it was trained on; otherwise one line naming both.
    Unknown specs (policies saved by older versions, synthetic data) are not checked."""
    if policy_spec is None or data_spec is None or policy_spec == data_spec:
        return
    raise ValueError(f"the policy was trained on {policy_spec.describe()} but {what} gives "
                     f"{data_spec.describe()}; evaluate it on data of its own spec (or retrain)")
