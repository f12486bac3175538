"""GelStereo-style marker images of the gel surface.

image = LED-lit gel background x white-light shading of the indented surface x dark markers displaced by
the surface displacement, + sensor noise. Mechanics fields arrive on the coarse world-aligned pad grid;
`to_image_axes` turns them into each camera's view (each camera sits behind its pad looking at the
peg, so the left camera sees +x to its left: the two images of a symmetric press are mirror images).

Speed (the dataset needs hundreds of sequences per second per core): every frame draws its markers at
their displaced sub-pixel centres by stamping pre-rendered anti-aliased sprites (1/8 px offsets) into
the luminance in one compiled loop (numba), instead of warping a full image; the smooth fields
(shading, lit background) are combined in float, and only the final colour and noise passes run per
channel in 8 bits.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numba
import numpy as np

from tla.sim.config import RenderConfig

cv2.setNumThreads(1)  # per-frame work is small: threads cost more than they give; workers run in parallel

_LUM_ONE = 200.0  # 8-bit luminance code of an unshaded, marker-free gel (headroom for highlights)
_SUBPIXEL = 8  # marker sprites at 1/8 px offsets
_NOISE_MARGIN = 32  # frames take random windows of a fixed noise tile this much larger than the image


@lru_cache(maxsize=8)
def _luminance(h: int, w: int, led_gradient: float) -> np.ndarray:
    """(h, w) float32 relative gel brightness: LED along the top edge, brightness falling off downwards,
    and a mild vignette."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    v = yy / max(h - 1, 1)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    return ((1 - led_gradient * v) * (1 - 0.35 * r2)).astype(np.float32)


@lru_cache(maxsize=4)
def _unit_noise(h: int, w: int) -> np.ndarray:
    shape = (h + _NOISE_MARGIN, w + _NOISE_MARGIN, 3)
    return np.random.default_rng(20250311).standard_normal(shape).astype(np.float32)


@lru_cache(maxsize=32)
def _noise_banks(h: int, w: int, std_q: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed Gaussian noise tile at one noise level, split into its positive and negative parts as
    uint8 (two saturating 8-bit ops add it). Levels are quantised to 0.25 grey levels so banks cache."""
    noise = _unit_noise(h, w) * np.float32(std_q)
    return cv2.convertScaleAbs(np.maximum(noise, 0)), cv2.convertScaleAbs(np.minimum(noise, 0))


@lru_cache(maxsize=8)
def _marker_sprites(radius: float) -> tuple[np.ndarray, int]:
    """(S, S, k, k) anti-aliased discs (coverage = clip(r + 0.5 - distance)) for each 1/S px offset."""
    half = int(np.ceil(radius + 1))
    off = np.arange(-half, half + 1, dtype=np.float32)
    frac = np.arange(_SUBPIXEL, dtype=np.float32) / _SUBPIXEL
    dx = off[None, None, None, :] - frac[None, :, None, None]  # (1, S, 1, k): pixel - centre, x
    dy = off[None, None, :, None] - frac[:, None, None, None]  # (S, 1, k, 1)
    cover = np.clip(radius + 0.5 - np.hypot(dx, dy), 0.0, 1.0)  # (S_y, S_x, k, k)
    return cover.astype(np.float32), half


def marker_reference(cfg: RenderConfig, pitch: float, shift_px: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Reference (undeformed) marker centres in pixels, (M, 2) as (x, y): a jittered square grid."""
    ppm = cfg.width / cfg.pad_width_mm
    step = pitch * ppm
    xs = np.arange(step / 2, cfg.width, step)
    ys = np.arange(step / 2, cfg.height, step)
    X, Y = np.meshgrid(xs, ys)
    pts = np.stack([X.ravel(), Y.ravel()], 1) + shift_px[None, :]
    pts = pts + rng.normal(0.0, cfg.marker_jitter * ppm, pts.shape)
    return pts.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _stamp_sprites(image, x0, y0, sprite, sprites, rows, cols, k):  # pragma: no cover (compiled)
    """image *= sprites[sprite[i]] over each sprite's support pixels (rows, cols) of its k x k box, the
    box's top-left at (x0[i], y0[i]); pixels off the image are skipped."""
    h, w = image.shape
    flat = image.reshape(-1)
    offsets = rows * w + cols
    for i in range(x0.size):
        values = sprites[sprite[i]]
        if 0 <= x0[i] and x0[i] + k <= w and 0 <= y0[i] and y0[i] + k <= h:  # whole box on the image
            start = y0[i] * w + x0[i]
            for j in range(offsets.size):
                flat[start + offsets[j]] *= values[j]
        else:
            for j in range(rows.size):
                y, x = y0[i] + rows[j], x0[i] + cols[j]
                if 0 <= y < h and 0 <= x < w:
                    flat[y * w + x] *= values[j]


class MarkerPainter:
    """Darkens images by marker patterns: each pixel of a marker is multiplied by 1 - darkness x
    coverage, anti-aliased at 1/8 px. Sprites for every 1/8 px offset are pre-rendered; a compiled loop
    stamps one frame's markers in place while that frame is still in cache (a numpy scatter needs a
    170k-entry int64 index per attempt and was the render's largest cost). Multiplying, not
    overwriting, makes the result independent of drawing order and right where two sprites touch."""

    def __init__(self, h: int, w: int, radius_px: float, darkness: float):
        cover, self.half = _marker_sprites(radius_px)
        self.h, self.w, self.k = h, w, 2 * self.half + 1
        cover = cover.reshape(_SUBPIXEL * _SUBPIXEL, -1)
        support = np.flatnonzero(cover.max(axis=0) > 0)  # sprite pixels any sub-pixel offset can cover
        self.sprites = np.ascontiguousarray(1.0 - darkness * cover[:, support], np.float32)
        self.rows, self.cols = (a.astype(np.int64) for a in np.divmod(support, self.k))

    def place(self, centres: np.ndarray) -> np.ndarray:
        """Marker centres (..., M, 2) px as (x, y) -> (..., 3, M) int64: each sprite box's top-left x, y
        and which 1/8 px sprite to stamp."""
        sub = np.rint(np.asarray(centres, np.float64) * _SUBPIXEL).astype(np.int64)
        base, frac = np.divmod(sub, _SUBPIXEL)  # whole pixel and nearest 1/8 px offset
        return np.stack([base[..., 0] - self.half, base[..., 1] - self.half,
                         frac[..., 1] * _SUBPIXEL + frac[..., 0]], axis=-2)

    def stamp(self, image: np.ndarray, placed: np.ndarray) -> None:
        """Darken one float32 image (h, w) in place by markers placed by `place`, (3, M)."""
        if image.dtype != np.float32 or image.shape != (self.h, self.w) or not image.flags.c_contiguous:
            raise ValueError(f"MarkerPainter.stamp needs a C-contiguous float32 ({self.h}, {self.w}) image; "
                             f"got {image.dtype} {image.shape}")
        x0, y0, sprite = placed
        _stamp_sprites(image, x0, y0, sprite, self.sprites, self.rows, self.cols, self.k)

    def paint(self, centres: np.ndarray) -> np.ndarray:
        """Marker centres (x, y) px, (M, 2) for one image or (F, M, 2) for F images -> a new float32
        factor image (h, w) or (F, h, w): 1 on bare gel; markers off the image are cut."""
        placed = self.place(centres)
        factors = np.ones(placed.shape[:-2] + (self.h, self.w), np.float32)
        for image, where in zip(factors.reshape(-1, self.h, self.w), placed.reshape(-1, *placed.shape[-2:])):
            self.stamp(image, where)
        return factors


@lru_cache(maxsize=8)
def marker_painter(h: int, w: int, radius_px: float, darkness: float) -> MarkerPainter:
    return MarkerPainter(h, w, radius_px, darkness)


def draw_markers(cfg: RenderConfig, centres: np.ndarray) -> np.ndarray:
    """Marker factor image (h, w) float32 for markers at `centres` (M, 2) px, as a new array."""
    painter = marker_painter(cfg.height, cfg.width, cfg.marker_radius * cfg.width / cfg.pad_width_mm,
                             cfg.marker_darkness)
    return painter.paint(centres)


@dataclass
class PadLook:
    """The per-attempt appearance shared by both sensors: lit background, colour and noise level."""

    lit: np.ndarray  # (h, w) float32 gel luminance (LED gradient x vignette x lighting gain x _LUM_ONE)
    colour: tuple[float, float, float]  # per-channel gain: background RGB / _LUM_ONE
    noise_pos: np.ndarray  # (h + m, w + m, 3) uint8: positive / negative parts of the sensor noise
    noise_neg: np.ndarray

    @classmethod
    def create(cls, cfg: RenderConfig, light_gain: float, noise_std: float) -> "PadLook":
        lit = _luminance(cfg.height, cfg.width, cfg.led_gradient) * np.float32(light_gain * _LUM_ONE)
        pos, neg = _noise_banks(cfg.height, cfg.width, round(noise_std * 4) / 4)
        return cls(lit, tuple(c / _LUM_ONE for c in cfg.background_rgb), pos, neg)


def camera_fields(indentation: np.ndarray, displacement: np.ndarray, sigma_cells: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """World-aligned pad fields, indentation (T, 2 pads, gh, gw) and displacement (T, 2, gh, gw, 2) ->
    what each camera sees, in frame order (pad-major: left t0..t3, right t0..t3): depth (8, gh, gw) and
    surface displacement (8, gh, gw, 2) as image (u, v), spread through the gel layer.

    Rows flip (z up -> image rows down) and the left camera sees x mirrored. The elastic spreading is a
    Gaussian kernel of the layer's length scale (~ its thickness, `sigma_cells` grid cells), run on all
    8 x 3 channels in one pass."""
    t, _, gh, gw = indentation.shape
    stacked = np.empty((gh, gw, 2, t, 3), np.float32)  # channels last: (pad, frame, depth/u/v)
    left = (slice(None), 0, slice(None, None, -1), slice(None, None, -1))
    right = (slice(None), 1, slice(None, None, -1), slice(None))
    for pad, view, sign_u in ((0, left, -1.0), (1, right, 1.0)):
        stacked[:, :, pad, :, 0] = np.moveaxis(indentation[view], 0, -1)
        stacked[:, :, pad, :, 1] = np.moveaxis(sign_u * displacement[view][..., 0], 0, -1)
        stacked[:, :, pad, :, 2] = np.moveaxis(-displacement[view][..., 1], 0, -1)
    out = cv2.GaussianBlur(stacked.reshape(gh, gw, -1), (0, 0), max(sigma_cells, 1e-3),
                           borderType=cv2.BORDER_REPLICATE)
    out = np.moveaxis(out.reshape(gh, gw, 2 * t, 3), 2, 0)
    return np.ascontiguousarray(out[..., 0]), np.ascontiguousarray(out[..., 1:])


def _gradient(f: np.ndarray, h: float, axis: int) -> np.ndarray:
    """np.gradient(f, h, axis=axis) (central differences, one-sided at the edges), minus its overhead."""
    f = np.moveaxis(f, axis, -1)
    g = np.empty_like(f)
    g[..., 1:-1] = (f[..., 2:] - f[..., :-2]) / (2.0 * h)
    g[..., 0] = (f[..., 1] - f[..., 0]) / h
    g[..., -1] = (f[..., -1] - f[..., -2]) / h
    return np.moveaxis(g, -1, axis)


def shading(cfg: RenderConfig, depth: np.ndarray) -> np.ndarray:
    """White-light shading of the indented surface (N, gh, gw): slope against the key light (u right,
    v down) and a slight darkening with depth."""
    gx, gy = _gradient(depth, cfg.grid_pitch_mm, axis=2), _gradient(depth, cfg.grid_pitch_mm, axis=1)
    lx, lz = cfg.light_dir
    return (1.0 + cfg.shading_gain * (lx * gx - lz * gy) - 0.25 * depth).astype(np.float32)


def sample_markers(disp_px: np.ndarray, markers_ref: np.ndarray, cell: float) -> np.ndarray:
    """Bilinear samples of coarse displacement fields (N, gh, gw, 2) at reference marker centres, (M, 2)
    px shared by all fields or (N, M, 2) one set per field -> (N, M, 2)."""
    n, gh, gw, _ = disp_px.shape
    ref = np.broadcast_to(markers_ref, (n,) + np.shape(markers_ref)[-2:])
    fx = np.clip(ref[..., 0] / cell - 0.5, 0, gw - 1)
    fy = np.clip(ref[..., 1] / cell - 0.5, 0, gh - 1)
    x0, y0 = np.minimum(fx.astype(int), gw - 2), np.minimum(fy.astype(int), gh - 2)
    tx, ty = (fx - x0)[..., None], (fy - y0)[..., None]
    flat = disp_px.reshape(-1, 2)
    i00 = (np.arange(n)[:, None] * gh + y0) * gw + x0  # flat index of each sample's top-left cell

    def at(offset: int) -> np.ndarray:
        return np.take(flat, i00 + offset, axis=0)  # np.take: ~10x faster than fancy indexing here

    return (at(0) * ((1 - tx) * (1 - ty)) + at(1) * (tx * (1 - ty))
            + at(gw) * ((1 - tx) * ty) + at(gw + 1) * (tx * ty))


_per_thread = threading.local()


def _luminance_buffer(h: int, w: int) -> np.ndarray:
    """A reused (h, w) float32 buffer, one per thread: small enough to stay in cache from pass to pass,
    and never shared by two threads rendering at once."""
    buf = getattr(_per_thread, "luminance", None)
    if buf is None or buf.shape != (h, w):
        buf = _per_thread.luminance = np.empty((h, w), np.float32)
    return buf


def render_frames(
    cfg: RenderConfig,
    look: PadLook,
    shade: np.ndarray,
    markers: np.ndarray,
    noise_offsets: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Tactile images, uint8 (F, h, w, 3), from each camera frame's coarse shading (F, gh, gw), its
    displaced marker centres (F, M, 2) px and noise-window offsets (F, 2); written into `out` if given.
    Each frame runs start to end in one cache-sized luminance buffer."""
    h, w = cfg.height, cfg.width
    painter = marker_painter(h, w, cfg.marker_radius * w / cfg.pad_width_mm, cfg.marker_darkness)
    placed = painter.place(markers)
    lum = _luminance_buffer(h, w)
    out = np.empty((len(shade), h, w, 3), np.uint8) if out is None else out
    for i, (oy, ox) in enumerate(noise_offsets.tolist()):
        cv2.multiply(cv2.resize(shade[i], (w, h), interpolation=cv2.INTER_LINEAR), look.lit, dst=lum)
        painter.stamp(lum, placed[i])
        # Colour and noise in 8 bits: one saturating conversion per channel, noise added with saturation.
        img = cv2.merge([cv2.convertScaleAbs(lum, alpha=g) for g in look.colour], dst=out[i])
        cv2.add(img, look.noise_pos[oy : oy + h, ox : ox + w], dst=img)
        cv2.subtract(img, look.noise_neg[oy : oy + h, ox : ox + w], dst=img)
    return out
