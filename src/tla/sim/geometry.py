"""Peg cross-sections, holes, the insertion test and the rim-contact region.

Peg frame: the peg axis is the origin, x along the pads, y toward the left pad (+y). A shape's `size` is
its minimum width across (square side, hexagon across flats, round diameter, triangle/pentagon height),
and its orientation puts a flat face (or, for odd polygons, a face and the opposite vertex) against the
pads. The hole is the nominal cross-section grown by c/2 on every side with an exact mitred offset, so a
direction-dependent tolerance (the triangle's) comes out of the geometry itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon

SHAPES = ("square", "triangle", "hexagon", "round", "pentagon")
TRAIN_SHAPES = ("square", "triangle")
OOD_SHAPES = ("round", "hexagon")
# Shapes only the tactile-language pretraining corpus uses (`tla pretrain`): disjoint from every evaluation
# shape, so the unseen shapes of Table IV stay unseen. Rectangles and the ellipse are `size` across the pads
# (y) and longer along x by their aspect ratio.
PRETRAIN_SHAPES = ("rectangle", "long_rectangle", "ellipse", "heptagon", "octagon")
_ELONGATED = {"rectangle": 1.4, "long_rectangle": 1.8, "ellipse": 1.4}


class UnknownShapeError(ValueError):
    pass


def check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise UnknownShapeError(f"unknown peg shape {shape!r}; choose one of {', '.join(SHAPES)}")
    return shape


def check_sim_shape(shape: str) -> str:
    """A shape the simulator can build: an evaluation shape or a pretraining-only one."""
    if shape not in SHAPES and shape not in PRETRAIN_SHAPES:
        raise UnknownShapeError(f"unknown peg shape {shape!r}; choose one of {', '.join(SHAPES)} "
                                f"(pretraining only: {', '.join(PRETRAIN_SHAPES)})")
    return shape


def check_clearance(clearance) -> float:
    """The total assembly clearance as a float: a positive, finite number of mm, else ValueError."""
    try:
        c = float(clearance)
    except (TypeError, ValueError):
        raise ValueError(f"clearance must be a number in mm, got {clearance!r}") from None
    if not (np.isfinite(c) and c > 0):
        raise ValueError(f"clearance must be a positive, finite number of mm, got {c}")
    return c


def _regular_polygon(n: int, circumradius: float, first_vertex_angle: float) -> np.ndarray:
    a = first_vertex_angle + 2 * np.pi * np.arange(n) / n
    return np.stack([circumradius * np.cos(a), circumradius * np.sin(a)], axis=1)


@lru_cache(maxsize=64)
def peg_polygon(shape: str, size: float = 10.0, circle_segments: int = 64) -> Polygon:
    """The nominal cross-section, centred on the peg axis (its centroid)."""
    check_sim_shape(shape)
    if shape in ("rectangle", "long_rectangle"):
        half = np.array([size * _ELONGATED[shape], size]) / 2
        pts = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * half
    elif shape == "ellipse":
        a = 2 * np.pi * np.arange(circle_segments) / circle_segments
        pts = np.stack([size * _ELONGATED[shape] / 2 * np.cos(a), size / 2 * np.sin(a)], axis=1)
    elif shape == "octagon":  # flats at +-y face the pads
        pts = _regular_polygon(8, size / 2 / np.cos(np.pi / 8), np.pi / 8)
    elif shape == "square":
        pts = _regular_polygon(4, size / np.sqrt(2), np.pi / 4)
    elif shape == "hexagon":  # flats at +-y face the pads, vertices along x
        pts = _regular_polygon(6, size / np.sqrt(3), 0.0)
    elif shape == "round":
        pts = _regular_polygon(circle_segments, size / 2 / np.cos(np.pi / circle_segments), 0.0)
    else:  # odd polygons: a vertex toward +y (left pad), the opposite face against the right pad
        n = {"triangle": 3, "pentagon": 5, "heptagon": 7}[shape]
        circumradius = size / (1 + np.cos(np.pi / n))
        pts = _regular_polygon(n, circumradius, np.pi / 2)
    poly = Polygon(pts)
    c = poly.centroid
    return affinity.translate(poly, -c.x, -c.y)


@lru_cache(maxsize=256)
def hole_polygon(shape: str, clearance: float, size: float = 10.0, circle_segments: int = 64) -> Polygon:
    """Peg cross-section grown by clearance/2 on every side (mitred: the hole keeps the peg's corners)."""
    if clearance < 0:
        raise ValueError(f"clearance must be >= 0 mm, got {clearance}")
    peg = peg_polygon(shape, size, circle_segments)
    return peg.buffer(clearance / 2.0, join_style="mitre", mitre_limit=10.0)


def footprint(peg: Polygon, error) -> Polygon:
    """The peg's cross-section posed by the error (ex, ey mm; erz deg) in the hole frame."""
    ex, ey, erz = (float(v) for v in error)
    return affinity.translate(affinity.rotate(peg, erz, origin=(0, 0)), ex, ey)


def outside_area(fp: Polygon, hole: Polygon) -> float:
    return float(contact_region(fp, hole).area)


def inserts(shape: str, clearance: float, error, size: float = 10.0, area_tol: float = 1e-3,
            circle_segments: int = 64) -> bool:
    """True when the posed peg's footprint lies inside the hole (up to `area_tol` mm^2)."""
    fp = footprint(peg_polygon(shape, size, circle_segments), error)
    return outside_area(fp, hole_polygon(shape, clearance, size, circle_segments)) <= area_tol


def collides(shape: str, clearance: float, error, g) -> bool:
    """True when an attempt at `error` lands on the rim under the geometry config `g`
    (`tla.sim.config.GeometryConfig`): the one test of the env's reset and the dataset build (the simulator
    inserts exactly when it is False)."""
    return not inserts(shape, clearance, error, g.peg_size, g.insert_area_tol, g.circle_segments)


def contact_region(fp: Polygon, hole: Polygon):
    """The part of the peg's bottom face that lands on the rim: footprint minus hole."""
    return fp.difference(hole)


@lru_cache(maxsize=256)
def _grown(poly: Polygon, by: float) -> Polygon:
    """`poly` offset outward by `by` with mitred corners (the hole's chamfer top edge)."""
    return poly.buffer(by, join_style="mitre", mitre_limit=10.0)


def contact_points(fp: Polygon, hole: Polygon, chamfer: float, simplify: float = 0.02, region=None):
    """Support points of the rim contact with their share of area, rim height and surface normal.

    The peg bottom is flat and rigid; the rim top is flat, with a 45-degree chamfer of width `chamfer`
    falling toward the hole edge. A rigid flat face on a flat support carries its load at the vertices of
    the contact region (footprint minus hole) and of its flat-top part (whose edge is the chamfer's top
    line, where the peg pivots); each vertex gets an equal share of the region's area for the rim's
    Winkler stiffness. Returns (points (m, 2), area (m,), height (m,) <= 0, normals (m, 3)), hole frame.
    `region` is `contact_region(fp, hole)` when the caller already has it.
    """
    regions = [contact_region(fp, hole) if region is None else region]
    if chamfer > 0:
        regions.append(fp.difference(_grown(hole, chamfer)))
    pts = []
    for region in regions:
        for g in getattr(region, "geoms", [region]):
            if g.area <= 1e-9:
                continue
            g = g.simplify(simplify, preserve_topology=True) if simplify > 0 else g
            pts.append(np.asarray(g.exterior.coords)[:-1])
    if not pts:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 3))
    p = np.unique(np.round(np.concatenate(pts), 6), axis=0)
    area = np.full(len(p), max(regions[0].area, 1e-6) / len(p))
    height = np.zeros(len(p))
    normals = np.tile([0.0, 0.0, 1.0], (len(p), 1))
    if chamfer > 0:
        boundary = hole.exterior
        geoms = shapely.points(p)
        dist = shapely.distance(geoms, boundary)
        on = dist < chamfer - 1e-6
        height[on] = -(chamfer - dist[on])  # 45 degrees: the drop equals the distance to the top edge
        nearest = shapely.get_coordinates(shapely.shortest_line(geoms[on], boundary))[1::2]
        toward = nearest - p[on]
        norm = np.linalg.norm(toward, axis=1, keepdims=True)
        horiz = np.where(norm > 1e-9, toward / np.maximum(norm, 1e-12), 0.0)
        n = np.column_stack([horiz, np.ones(len(horiz))])
        normals[on] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return p, area, height, normals


@lru_cache(maxsize=256)
def pad_contact_strip(peg: Polygon, side: int, depth: float, min_width: float) -> tuple[float, float]:
    """(centre x, half-width) of the peg-pad contact strip on the left (side=+1) or right (-1) pad.

    The strip is the part of the cross-section within `depth` of the pad plane: a face gives its full
    width, a curved side a chord, a vertex a narrow strip of at least `min_width`.
    """
    minx, miny, maxx, maxy = peg.bounds
    band = (maxy - depth, maxy + 1) if side > 0 else (miny - 1, miny + depth)
    clip = peg.intersection(shapely.box(minx - 1, band[0], maxx + 1, band[1]))
    if clip.is_empty:
        return 0.0, min_width / 2
    x0, _, x1, _ = clip.bounds
    half = max((x1 - x0) / 2, min_width / 2)
    return (x0 + x1) / 2, half


def pad_planes(peg: Polygon) -> tuple[float, float]:
    """y of the left (+y) and right (-y) pad planes: where the pads touch the peg."""
    _, miny, _, maxy = peg.bounds
    return maxy, miny
