"""Harder conditions for robustness trials: the knobs of `SimConfig.perturb` (`PerturbConfig`).

- actuation noise (`action_std`): the env executes commanded + N(0, std) in x, y (mm) and rz (deg);
- sensor noise (`pixel_noise_std`, `marker_noise_px`): extra Gaussian noise on the camera pixels, and on the
  tracked marker centres (what the `marker_flow` modality reads);
- sensor mounting (`mount_shift_px`, `mount_rot_deg`): a fixed offset / rotation of each pad's gel image
  (frames, marker centres and the depth / shear fields move together);
- gel stiffness drift (`stiffness_scale`): the gel's Young's modulus times a factor (train/test mismatch);
- marker occlusion (`occlusion`): a share of each pad's markers is neither drawn nor tracked.

All are off by default and then never draw a number, so the default config is bit-identical to the simulator
without them. Every draw comes from a *substream* of the attempt's Generator: a Generator seeded by the same
seed key plus a fixed tag (`ACTUATION`, `SENSOR`), so an attempt replays exactly from its seed and turning a
knob on never shifts the draws of the rest of the attempt (material, markers, camera noise).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from tla.sim.config import PerturbConfig

ACTUATION, SENSOR = 0x7A0001, 0x7A0002  # substream tags (spawn-key suffixes; numpy's own spawns count from 0)
_NOISE_MARGIN = 32  # the extra pixel noise takes random windows of a fixed tile this much larger than a frame


def validate(p: PerturbConfig) -> None:
    """ValueError naming the first impossible knob value."""
    if any(s < 0 for s in p.action_std) or p.pixel_noise_std < 0 or p.marker_noise_px < 0:
        raise ValueError(f"perturb noise levels must be >= 0, got {p}")
    if not p.stiffness_scale > 0:
        raise ValueError(f"perturb.stiffness_scale must be > 0, got {p.stiffness_scale}")
    if not 0.0 <= p.occlusion < 1.0:
        raise ValueError(f"perturb.occlusion must be in [0, 1), got {p.occlusion}")


def substream(rng: np.random.Generator, tag: int) -> np.random.Generator:
    """A Generator seeded by `rng`'s seed key plus `tag`: reproducible from the attempt's seed and independent
    of (and without advancing) `rng`'s own stream."""
    ss = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(ss, np.random.SeedSequence):
        return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, tag)))
    return np.random.default_rng([int(rng.integers(0, 2**63 - 1)), tag])  # pragma: no cover - foreign generators


# -- actuation -------------------------------------------------------------------------------------------
def actuation_active(p: PerturbConfig) -> bool:
    return any(s > 0 for s in p.action_std)


def actuation_noise(p: PerturbConfig, attempt_rng: np.random.Generator) -> np.ndarray:
    """The (dx mm, dy mm, drz deg) added to a commanded action before the attempt drawn from `attempt_rng`
    (zeros, with no draw, when actuation noise is off)."""
    if not actuation_active(p):
        return np.zeros(3)
    validate(p)
    return substream(attempt_rng, ACTUATION).normal(0.0, np.asarray(p.action_std, np.float64))


# -- gel ------------------------------------------------------------------------------------------------
def drift_stiffness(p: PerturbConfig, params: dict) -> None:
    """Scale the attempt's drawn Young's modulus in place (nothing when the scale is 1)."""
    if p.stiffness_scale != 1.0:
        validate(p)
        params["E"] = params["E"] * float(p.stiffness_scale)


# -- sensor ---------------------------------------------------------------------------------------------
def _mount_active(p: PerturbConfig) -> bool:
    return any(v != 0 for v in p.mount_shift_px) or any(v != 0 for v in p.mount_rot_deg)


def sensor_active(p: PerturbConfig) -> bool:
    return p.pixel_noise_std > 0 or p.marker_noise_px > 0 or p.occlusion > 0 or _mount_active(p)


def sensor_stream(p: PerturbConfig, rng: np.random.Generator) -> np.random.Generator | None:
    """The attempt's sensor substream, or None when every sensor knob is off (then nothing is drawn)."""
    if not sensor_active(p):
        return None
    validate(p)
    return substream(rng, SENSOR)


def occlude(p: PerturbConfig, refs: list[np.ndarray], sensor: np.random.Generator) -> list[np.ndarray]:
    """Each pad's reference markers less round(occlusion x M) of them, drawn without replacement (the same
    count per pad, so the marker arrays stay rectangular); the kept markers keep their order."""
    if p.occlusion <= 0:
        return refs
    out = []
    for ref in refs:
        m = len(ref)
        keep = np.sort(sensor.permutation(m)[: m - round(p.occlusion * m)])
        out.append(np.ascontiguousarray(ref[keep]))
    return out


def mount_matrix(p: PerturbConfig, pad: int, width: int, height: int) -> np.ndarray:
    """2x3 affine (source px -> mounted image px) of pad `pad` (0 left, 1 right): rotation by `mount_rot_deg`
    about the image centre (counter-clockwise as displayed, cv2's convention), then the `mount_shift_px` offset."""
    m = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(p.mount_rot_deg[pad]), 1.0)
    m[:, 2] += np.asarray(p.mount_shift_px[2 * pad : 2 * pad + 2], np.float64)
    return m


@lru_cache(maxsize=4)
def _unit_noise(h: int, w: int) -> np.ndarray:
    shape = (h + _NOISE_MARGIN, w + _NOISE_MARGIN, 3)
    return np.random.default_rng(0x7A0003).standard_normal(shape).astype(np.float32)  # not the camera's tile


@lru_cache(maxsize=8)
def _noise_banks(h: int, w: int, std_q: float) -> tuple[np.ndarray, np.ndarray]:
    noise = _unit_noise(h, w) * np.float32(std_q)
    return cv2.convertScaleAbs(np.maximum(noise, 0)), cv2.convertScaleAbs(np.minimum(noise, 0))


def apply_sensor(p: PerturbConfig, result, render_cfg, frames_per_pad: int, sensor: np.random.Generator) -> None:
    """Mounting, then pixel noise, then marker tracking noise, in place on a rendered `AttemptResult`
    (frames pad-major: left t0.., right t0..). Draws, in order: pixel-noise windows, marker noise."""
    h, w = render_cfg.height, render_cfg.width
    if _mount_active(p):
        gh, gw = result.depth.shape[1:]
        cell_x, cell_y = w / gw, h / gh
        refs, cur = result.markers_ref.astype(np.float64), result.markers_cur.astype(np.float64)
        for pad in range(refs.shape[0]):
            m = mount_matrix(p, pad, w, h)
            rot, t = m[:, :2], m[:, 2]
            frames = slice(pad * frames_per_pad, (pad + 1) * frames_per_pad)
            refs[pad] = refs[pad] @ rot.T + t
            cur[frames] = cur[frames] @ rot.T + t
            for i in range(frames.start, frames.stop):
                result.frames[i] = cv2.warpAffine(result.frames[i], m, (w, h), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REPLICATE)
            # the same motion on the coarse fields: grid cell g sits at px (g + 0.5) x cell
            s = np.diag([cell_x, cell_y])
            rot_g = np.linalg.inv(s) @ rot @ s
            t_g = np.linalg.inv(s) @ (rot @ (s @ [0.5, 0.5]) + t) - 0.5
            mg = np.column_stack([rot_g, t_g])
            for i in range(frames.start, frames.stop):
                result.depth[i] = cv2.warpAffine(result.depth[i], mg, (gw, gh), flags=cv2.INTER_LINEAR,
                                                 borderMode=cv2.BORDER_REPLICATE)
                shear = cv2.warpAffine(result.shear[i], mg, (gw, gh), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
                result.shear[i] = (shear.reshape(-1, 2) @ rot.T.astype(np.float32)).reshape(shear.shape)
        result.markers_ref, result.markers_cur = refs.astype(np.float32), cur.astype(np.float32)
    if p.pixel_noise_std > 0:
        pos, neg = _noise_banks(h, w, round(p.pixel_noise_std * 4) / 4)
        for frame, (oy, ox) in zip(result.frames, sensor.integers(0, _NOISE_MARGIN, (len(result.frames), 2)).tolist()):
            cv2.add(frame, pos[oy : oy + h, ox : ox + w], dst=frame)
            cv2.subtract(frame, neg[oy : oy + h, ox : ox + w], dst=frame)
    if p.marker_noise_px > 0:
        noise = sensor.normal(0.0, p.marker_noise_px, result.markers_cur.shape)
        result.markers_cur = (result.markers_cur + noise).astype(np.float32)
