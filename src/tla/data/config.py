"""Dataset build config and its presets (paper / tiny / smoke).

A build is fully described by `DataConfig` plus the simulator config it resolves (`sim_overrides` applied
to `tla.sim.SimConfig()`); both are written to `meta/info.json`, so a dataset says how to rebuild it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from tla.config import ConfigError

# Fixed split codes: part of every seed, so the same episode index in two splits is a different episode.
SPLIT_CODES = {"sp_train": 1, "sp_test": 2, "mp_train": 3, "mp_test_id": 4, "mp_test_ood": 5}


@dataclass(frozen=True)
class SplitSpec:
    name: str
    samples: int  # total; divided equally over `shapes` (remainder to the first shapes)
    shapes: tuple[str, ...] = ("square",)


@dataclass(frozen=True)
class PolicyConfig:
    """The random insertion policy that collects the data (see build.run_episode)."""

    max_attempts: int = 4  # attempts per episode; an insertion ends the episode early
    step_xy: float = 1.0  # random correction per attempt ~ U[-step, step] (mm), like the label caps
    step_rz: float = 1.5  # degrees; errors are reflected back into the sim's misalignment box (SimConfig.errors)


@dataclass(frozen=True)
class DataConfig:
    preset: str = "paper"
    seed: int = 0
    clearance: float = 2.0  # mm, total
    splits: tuple[SplitSpec, ...] = ()
    shard_size: int = 256  # samples per parquet file
    row_group_size: int = 16  # small row groups keep random access cheap for the torch Dataset
    # JPEG q95 by default. Measured on 240x320 sim frames (benchmarks/data_build.py --encoding):
    # PNG (lossless) ~1.2 MB/sample and ~55 ms/sample to encode, because the sensor noise does not
    # compress (37 GB for the paper preset); JPEG q95 ~0.38 MB/sample, ~3.5 ms, PSNR ~40 dB (RMS error ~2.7
    # grey levels, the size of the simulated sensor noise, 1-3). "png" stays available for lossless storage.
    image_format: Literal["png", "jpeg"] = "jpeg"
    jpeg_quality: int = 95
    png_compression: int = 1  # 0..9 (cv2); 1 is ~3x faster than 6 for ~3 % more bytes
    action_scale: tuple[float, float, float] = (100.0, 100.0, 100.0)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sim_overrides: tuple[str, ...] = ()  # dotted overrides applied to tla.sim.SimConfig()
    # dense sensor fields stored beside the images (tla.sim.modality): the `marker_flow` and `depth`
    # modalities read them; ~9 KB per sample before compression; () stores images only
    fields: tuple[str, ...] = ("marker_flow", "depth")

    def validate(self) -> None:
        """Every value a build uses, checked before anything is written (one line naming the bad value)."""
        import math

        checks = [
            (self.shard_size >= 1, f"shard_size must be >= 1, got {self.shard_size}"),
            (self.row_group_size >= 1, f"row_group_size must be >= 1, got {self.row_group_size}"),
            (math.isfinite(self.clearance) and self.clearance > 0,
             f"clearance must be a positive, finite number of mm, got {self.clearance}"),
            (0 <= self.jpeg_quality <= 100, f"jpeg_quality must be in 0..100, got {self.jpeg_quality}"),
            (0 <= self.png_compression <= 9, f"png_compression must be in 0..9, got {self.png_compression}"),
            (self.image_format in ("png", "jpeg"), f"image_format must be png or jpeg, got {self.image_format!r}"),
            (self.policy.max_attempts >= 1, f"policy.max_attempts must be >= 1, got {self.policy.max_attempts}"),
            (all(s.samples >= 0 for s in self.splits), "split sizes must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def split(self, name: str) -> SplitSpec:
        for s in self.splits:
            if s.name == name:
                return s
        raise ConfigError(f"unknown split {name!r}; this dataset has {[s.name for s in self.splits]}")


def _splits(sp_train: int, sp_test: int, mp_train: int, mp_test_id: int, mp_test_ood: int) -> tuple:
    return (
        SplitSpec("sp_train", sp_train, ("square",)),
        SplitSpec("sp_test", sp_test, ("square",)),
        SplitSpec("mp_train", mp_train, ("square", "triangle")),
        SplitSpec("mp_test_id", mp_test_id, ("square", "triangle")),
        SplitSpec("mp_test_ood", mp_test_ood, ("round", "hexagon")),
    )


PRESETS = {
    # The paper's sizes: 8k single-peg (6k/2k), 16k multi-peg train, 4k ID and 4k OOD test; 32k in all.
    "paper": DataConfig(preset="paper", splits=_splits(6000, 2000, 16000, 4000, 4000), shard_size=256),
    # The paper's 6k single-peg training samples (a tiny TLA needs them: at 1.5k it answered one constant
    # text), half the multi-peg training set, small test splits (15.1k samples, ~1.7 GB, ~70 s on 2 cores).
    # Frames at half resolution: the tiny models look at a small composite.
    "tiny": DataConfig(
        preset="tiny",
        splits=_splits(6000, 300, 8000, 400, 400),
        shard_size=128,
        sim_overrides=("render.height=120", "render.width=160"),
    ),
    # A few dozen per split, small frames: for tests and CI.
    "smoke": DataConfig(
        preset="smoke",
        splits=_splits(24, 12, 24, 12, 12),
        shard_size=8,
        row_group_size=4,
        sim_overrides=("render.height=96", "render.width=128"),
    ),
}


def preset(name: str) -> DataConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown data preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def with_sim_overrides(cfg: DataConfig, overrides: list[str]) -> DataConfig:
    return dataclasses.replace(cfg, sim_overrides=tuple(cfg.sim_overrides) + tuple(overrides))
