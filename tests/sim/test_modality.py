"""Tactile modalities: the dense marker-flow and depth fields, their images, and the env / dataset paths."""

import numpy as np
import pytest

from tla.config import apply_overrides
from tla.sim import modality as M
from tla.sim.config import SimConfig
from tla.sim.env import PegInHoleEnv
from tla.sim.simulator import simulate_attempt

H, W = 96, 128


@pytest.fixture(scope="module")
def cfg():
    return apply_overrides(SimConfig(), [f"render.height={H}", f"render.width={W}"])


def _marker_grid(pitch=8.0, jitter=0.3, seed=0):
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(pitch / 2, W, pitch), np.arange(pitch / 2, H, pitch))
    return np.column_stack([xs.ravel(), ys.ravel()]) + rng.normal(0, jitter, (xs.size, 2))


def test_uniform_marker_shift_gives_the_same_flow_in_every_cell():
    ref = _marker_grid()
    refs = np.stack([ref, ref])
    shift = np.array([1.5, -0.75])  # px
    cur = np.repeat(refs, 4, axis=0) + shift
    flow = M.marker_flow_field(refs, cur, H, W, px_per_mm=5.0)
    assert flow.shape == (8, *M.FIELD_GRID, 2)
    np.testing.assert_allclose(flow, np.broadcast_to(shift / 5.0, flow.shape), atol=1e-6)


def test_one_displaced_marker_only_moves_the_cells_around_it():
    ref = _marker_grid(jitter=0.0)
    cur = np.repeat(np.stack([ref, ref]), 4, axis=0)
    k = int(np.argmin(np.linalg.norm(ref - [W / 2, H / 2], axis=1)))
    cur[0, k] += [4.0, 0.0]
    flow = M.marker_flow_field(np.stack([ref, ref]), cur, H, W, px_per_mm=1.0)
    moved = np.argwhere(np.abs(flow[0, ..., 0]) > 0)
    gh, gw = M.FIELD_GRID
    cell = (ref[k, 1] * gh / H, ref[k, 0] * gw / W)
    assert len(moved) and np.all(np.abs(moved + 0.5 - cell).max(axis=1) <= 1.0)  # only neighbouring cells
    assert np.all(flow[1:] == 0) and np.all(flow[0, ..., 1] == 0)  # other frames, the other component


def test_flow_image_encodes_sign_and_magnitude():
    field = np.zeros((8, *M.FIELD_GRID, 2), np.float32)
    field[0, ..., 0] = 0.8  # +u (right) half the full scale
    field[1, ..., 1] = -M.FLOW_FULL_SCALE  # -v, full scale
    img = M.render_field("marker_flow", field, (H, W))
    assert img.shape == (8, H, W, 3) and img.dtype == np.uint8
    assert (img[2] == [128, 128, 0]).all()  # no flow: mid grey in u, v and black magnitude
    assert (img[0, ..., 0] == 128 + round(127 * 0.8 / M.FLOW_FULL_SCALE)).all()
    assert (img[1, ..., 1] == 1).all() and (img[1, ..., 2] == 255).all()


def test_depth_image_is_grey_and_monotone():
    field = np.linspace(0, M.DEPTH_FULL_SCALE, 8, dtype=np.float32)[:, None, None] * np.ones((1, *M.FIELD_GRID))
    img = M.render_field("depth", field, (H, W))
    levels = img[:, 0, 0, 0].astype(int)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert levels[0] == 0 and levels[-1] == 255 and (np.diff(levels) > 0).all()


def test_unknown_modality_is_named():
    with pytest.raises(ValueError, match="unknown tactile modality 'force'.*rgb, marker_flow, depth"):
        M.check_modality("force")


def test_contact_flow_follows_the_pose_error_sign(cfg):
    """The pads shear one way for +ex and the other for -ex: the flow fields' mean u differ in sign."""
    means = []
    for ex in (1.8, -1.8):
        res = simulate_attempt(cfg, "square", 2.0, [ex, 0.0, 0.0], np.random.default_rng(0))
        assert not res.inserted
        means.append(M.field(res, cfg.render, "marker_flow")[..., 0].mean())
    assert means[0] * means[1] < 0


def test_env_observation_in_a_field_modality_matches_the_stored_field(cfg):
    env = PegInHoleEnv(cfg, modality="marker_flow")
    obs, info = env.reset(seed=3)
    rgb_env = PegInHoleEnv(cfg)
    rgb, _ = rgb_env.reset(seed=3)
    assert obs.shape == rgb.shape == (8, H, W, 3) and not np.array_equal(obs, rgb)
    res = simulate_attempt(cfg, "square", 2.0, info["error"], np.random.default_rng([env._episode_seed, 0]))
    stored = M.field(res, cfg.render, "marker_flow").astype(M.STORAGE_DTYPE)
    np.testing.assert_array_equal(obs, M.render_field("marker_flow", stored, (H, W)))
    with pytest.raises(ValueError, match="unknown tactile modality"):
        PegInHoleEnv(cfg, modality="flow")
