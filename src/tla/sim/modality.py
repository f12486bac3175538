"""Tactile modalities: what a policy looks at, each rendered as the same (8, H, W, 3) uint8 observation.

The simulator computes more than the camera image; a real GelSight-type pipeline has the same quantities
(marker tracking, photometric-stereo depth). Three modalities, one entry each in `MODALITIES`:

- `rgb`: the camera frames (the paper's input).
- `marker_flow`: the tracked marker displacement (current minus reference marker centre), resampled
  from the markers onto a dense `FIELD_GRID` map over the sensing area (bilinear splatting: each cell is
  the distance-weighted mean of the markers around its centre), in mm. Rendered as red = 128 + 127 u / FLOW_FULL_SCALE, green the same for v
  (image axes: u right, v down), blue = 255 |d| / FLOW_FULL_SCALE.
- `depth`: the gel indentation field (mm), area-resampled to `FIELD_GRID`, rendered as grey
  255 * depth / DEPTH_FULL_SCALE.

Fields are stored by the dataset (small float16 grids, ~9 KB per sample) and rendered at any frame size,
so every policy keeps its image interface: a modality is one config value. A new modality is one
`fields()` entry and one `render_field()` branch here.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import cKDTree

from tla.sim.compose import NUM_FRAMES, NUM_STEPS

MODALITIES = ("rgb", "marker_flow", "depth")
FIELD_MODALITIES = ("marker_flow", "depth")  # stored as grids; rgb is stored as images
FIELD_GRID = (12, 16)  # rows x cols over the sensing area (1.5 mm cells on the 18 x 24 mm pad)
STORAGE_DTYPE = np.float16  # fields on disk (and in the env, so both observations are bit-identical)
FIELD_SHAPES = {"marker_flow": (NUM_FRAMES, *FIELD_GRID, 2), "depth": (NUM_FRAMES, *FIELD_GRID)}
FLOW_FULL_SCALE = 1.6  # mm of marker displacement rendered at +-127 grey levels (~ the 95th percentile peak)
DEPTH_FULL_SCALE = 0.4  # mm of indentation rendered as white (~ the largest in the tiny data)


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"unknown tactile modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return modality


def _grid_centres(height: int, width: int, grid: tuple[int, int]) -> np.ndarray:
    gh, gw = grid
    ys = (np.arange(gh) + 0.5) * height / gh
    xs = (np.arange(gw) + 0.5) * width / gw
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def splat_weights(points: np.ndarray, height: int, width: int, grid: tuple[int, int]) -> np.ndarray:
    """(gh * gw, N) bilinear splatting weights: point n spreads over the 4 grid cells around it, each in
    proportion to its closeness; rows are normalised, so `W @ values` is a kernel-weighted mean of the
    markers near each cell centre. A cell that no marker reaches takes its nearest marker."""
    gh, gw = grid
    fx = np.clip(points[:, 0] * gw / width - 0.5, 0, gw - 1)
    fy = np.clip(points[:, 1] * gh / height - 0.5, 0, gh - 1)
    x0, y0 = np.minimum(fx.astype(int), gw - 2), np.minimum(fy.astype(int), gh - 2)
    tx, ty = fx - x0, fy - y0
    w = np.zeros((gh * gw, len(points)))
    cols = np.arange(len(points))
    for dy, dx, wt in ((0, 0, (1 - tx) * (1 - ty)), (0, 1, tx * (1 - ty)), (1, 0, (1 - tx) * ty), (1, 1, tx * ty)):
        np.add.at(w, ((y0 + dy) * gw + x0 + dx, cols), wt)
    total = w.sum(1)
    empty = total < 1e-6
    if empty.any():
        nearest = cKDTree(points).query(_grid_centres(height, width, grid)[empty])[1]
        w[np.flatnonzero(empty), nearest] = 1.0
        total[empty] = 1.0
    return w / total[:, None]


def marker_flow_field(markers_ref: np.ndarray, markers_cur: np.ndarray, height: int, width: int,
                      px_per_mm: float, grid: tuple[int, int] = FIELD_GRID) -> np.ndarray:
    """Marker centres, reference (2 pads, M, 2) px and current (8 frames, M, 2) px -> dense displacement
    (8, gh, gw, 2) float32 in mm, each cell the splatting-weighted mean of the markers around it. The
    weights depend on the reference markers only, so one matrix per pad serves its 4 frames."""
    gh, gw = grid
    out = np.empty((NUM_FRAMES, gh, gw, 2), np.float32)
    for pad in range(markers_ref.shape[0]):
        ref = np.asarray(markers_ref[pad], np.float64)
        frames = slice(pad * NUM_STEPS, (pad + 1) * NUM_STEPS)
        disp = (np.asarray(markers_cur[frames], np.float64) - ref) / px_per_mm  # (4, M, 2)
        w = splat_weights(ref, height, width, grid)
        dense = w @ disp.transpose(1, 0, 2).reshape(len(ref), -1)  # (P, 4 * 2)
        out[frames] = dense.reshape(gh, gw, NUM_STEPS, 2).transpose(2, 0, 1, 3)
    return out


def depth_field(depth: np.ndarray, grid: tuple[int, int] = FIELD_GRID) -> np.ndarray:
    """Coarse indentation (8, h, w) mm -> (8, gh, gw) float32 mm (area resampling)."""
    gh, gw = grid
    interp = cv2.INTER_AREA if depth.shape[1] >= gh else cv2.INTER_LINEAR
    return np.stack([cv2.resize(np.asarray(d, np.float32), (gw, gh), interpolation=interp) for d in depth])


def field(result, render_cfg, modality: str) -> np.ndarray:
    """The stored field of one field modality for one rendered attempt (`AttemptResult`)."""
    if modality == "marker_flow":
        ppm = render_cfg.width / render_cfg.pad_width_mm
        return marker_flow_field(result.markers_ref, result.markers_cur, render_cfg.height, render_cfg.width, ppm)
    if modality == "depth":
        return depth_field(result.depth)
    raise ValueError(f"{modality!r} is not a field modality; field modalities are {FIELD_MODALITIES}")


def fields(result, render_cfg) -> dict[str, np.ndarray]:
    """Every field modality's field for one rendered attempt."""
    return {m: field(result, render_cfg, m) for m in FIELD_MODALITIES}


def render_field(modality: str, field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A stored field (8, gh, gw[, 2]) -> uint8 observation (8, H, W, 3), bilinear upsampling."""
    h, w = size
    f = np.asarray(field, np.float32)
    if modality == "marker_flow":
        mag = np.linalg.norm(f, axis=-1, keepdims=True)
        img = np.concatenate([128.0 + 127.0 / FLOW_FULL_SCALE * f, 255.0 / FLOW_FULL_SCALE * mag], axis=-1)
    elif modality == "depth":
        img = np.repeat((255.0 / DEPTH_FULL_SCALE * f)[..., None], 3, axis=-1)
    else:
        raise ValueError(f"{modality!r} is not a field modality; field modalities are {FIELD_MODALITIES}")
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.stack([cv2.resize(i, (w, h), interpolation=cv2.INTER_LINEAR) for i in img])


def observe(result, render_cfg, modality: str) -> np.ndarray:
    """The observation of one rendered attempt in `modality`, at the camera's frame size."""
    if check_modality(modality) == "rgb":
        return result.frames
    size = (render_cfg.height, render_cfg.width)
    stored = field(result, render_cfg, modality).astype(STORAGE_DTYPE)  # what a dataset row holds, exactly
    return render_field(modality, stored, size)
