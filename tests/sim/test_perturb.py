"""The robustness knobs (`SimConfig.perturb`, tla.sim.perturb): each changes what it should and nothing else,
reproducibly from the attempt's seed, and the default config is bit-identical to the knob-free code path."""

from dataclasses import replace

import numpy as np
import pytest

from tla.config import apply_overrides
from tla.sim import perturb
from tla.sim import simulator as simulator_module
from tla.sim.config import PerturbConfig, SimConfig
from tla.sim.env import PegInHoleEnv
from tla.sim.simulator import simulate_attempt

ERROR = [1.2, -0.8, 2.0]


def _attempt(cfg: SimConfig, seed=(5, 0), shape="square"):
    return simulate_attempt(cfg, shape, 1.6, ERROR, np.random.default_rng(list(seed)))


def _with(**knobs) -> SimConfig:
    return replace(SimConfig(), perturb=replace(PerturbConfig(), **knobs))


def _same(a, b) -> None:
    for name in ("frames", "depth", "shear", "markers_ref", "markers_cur"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.params == b.params


class _NoKnobs:
    """tla.sim.perturb with every hook a no-op: the simulator as it was before the knobs existed."""

    @staticmethod
    def drift_stiffness(p, params):
        return None

    @staticmethod
    def sensor_stream(p, rng):
        return None


def test_default_config_is_bit_identical_to_the_knob_free_code_path(monkeypatch):
    default = [_attempt(SimConfig(), (5, i), s) for i, s in enumerate(("square", "triangle", "pentagon"))]
    env_runs = {}
    for disabled in (False, True):
        if disabled:
            monkeypatch.setattr(simulator_module, "perturb", _NoKnobs)
            monkeypatch.setattr("tla.sim.env.actuation_active", lambda p: False)
            for i, (s, ref) in enumerate(zip(("square", "triangle", "pentagon"), default)):
                _same(ref, _attempt(SimConfig(), (5, i), s))
        env = PegInHoleEnv(SimConfig(), modality="marker_flow")
        obs, info = env.reset(seed=3)
        trace = [obs]
        for _ in range(3):
            obs, _, _, _, info = env.step(info["label"] * 0.5)
            trace += [obs, info["error"]]
        env_runs[disabled] = trace
    for a, b in zip(env_runs[False], env_runs[True]):
        np.testing.assert_array_equal(a, b)


def test_knobs_are_dotted_overrides_and_bad_values_are_refused():
    cfg = apply_overrides(SimConfig(), ["perturb.action_std=[0.2,0.2,0.5]", "perturb.occlusion=0.3"])
    assert cfg.perturb.action_std == (0.2, 0.2, 0.5) and cfg.perturb.occlusion == 0.3
    with pytest.raises(ValueError, match="occlusion"):
        _attempt(_with(occlusion=1.0))
    with pytest.raises(ValueError, match="stiffness_scale"):
        _attempt(_with(stiffness_scale=0.0))


def test_actuation_noise_perturbs_the_executed_motion_by_the_seeded_draw_and_nothing_else():
    std = (0.2, 0.3, 0.5)
    noisy, clean = PegInHoleEnv(_with(action_std=std)), PegInHoleEnv(SimConfig())
    obs_n, info_n = noisy.reset(seed=11)
    obs_c, info_c = clean.reset(seed=11)
    np.testing.assert_array_equal(obs_n, obs_c)  # the first attempt moves nothing
    command = np.array([0.5, -0.4, 1.0])
    draw = perturb.substream(np.random.default_rng([noisy._episode_seed, 1]), perturb.ACTUATION).normal(0.0, std)
    obs_n, _, _, _, info_n = noisy.step(command)
    np.testing.assert_allclose(info_n["executed_action"], command + draw)
    np.testing.assert_allclose(info_n["error"], info_c["error"] + command + draw)
    assert np.all(np.abs(draw) > 0)
    # executing the same motion without the noise gives the very same attempt: the noise moved nothing else
    obs_c, _, _, _, info_c = clean.step(info_n["executed_action"])
    np.testing.assert_array_equal(obs_n, obs_c)
    np.testing.assert_allclose(info_c["executed_action"], info_n["executed_action"])
    # reproducible from the episode seed
    again = PegInHoleEnv(_with(action_std=std))
    again.reset(seed=11)
    np.testing.assert_array_equal(again.step(command)[4]["error"], info_n["error"])
    # the draws have the configured spread per axis
    rng = np.random.default_rng(0)
    draws = np.array([perturb.actuation_noise(PerturbConfig(action_std=std), np.random.default_rng([int(s), 1]))
                      for s in rng.integers(0, 2**32, 2000)])
    np.testing.assert_allclose(draws.std(0), std, rtol=0.1)
    np.testing.assert_allclose(draws.mean(0), 0, atol=0.03)


def test_pixel_noise_adds_the_configured_std_to_the_frames_only():
    clean, noisy = _attempt(SimConfig()), _attempt(_with(pixel_noise_std=8.0))
    diff = noisy.frames.astype(np.float64) - clean.frames
    ok = (clean.frames > 40) & (clean.frames < 215)  # away from saturation
    assert abs(diff[ok].std() - 8.0) < 0.8 and abs(diff[ok].mean()) < 0.3
    for name in ("depth", "shear", "markers_ref", "markers_cur"):
        np.testing.assert_array_equal(getattr(clean, name), getattr(noisy, name))
    np.testing.assert_array_equal(noisy.frames, _attempt(_with(pixel_noise_std=8.0)).frames)  # from the seed


def test_marker_noise_jitters_the_tracked_markers_only():
    clean, noisy = _attempt(SimConfig()), _attempt(_with(marker_noise_px=1.0))
    d = noisy.markers_cur - clean.markers_cur
    assert abs(d.std() - 1.0) < 0.05 and abs(d.mean()) < 0.05
    np.testing.assert_array_equal(noisy.markers_ref, clean.markers_ref)
    np.testing.assert_array_equal(noisy.frames, clean.frames)


def test_mounting_shift_moves_each_pads_image_and_markers():
    shift = (8.0, 4.0, -6.0, 2.0)
    clean, moved = _attempt(SimConfig()), _attempt(_with(mount_shift_px=shift))
    for pad, (dx, dy) in enumerate((shift[:2], shift[2:])):
        np.testing.assert_allclose(moved.markers_ref[pad], clean.markers_ref[pad] + [dx, dy], atol=1e-3)
        frames = slice(4 * pad, 4 * pad + 4)
        np.testing.assert_allclose(moved.markers_cur[frames], clean.markers_cur[frames] + [dx, dy], atol=1e-3)
        # integer shifts: the interior of each frame is the clean frame moved by (dx, dy)
        dx, dy = int(dx), int(dy)
        src = clean.frames[frames][:, 20 - dy : 200 - dy, 20 - dx : 300 - dx]
        np.testing.assert_array_equal(moved.frames[frames][:, 20:200, 20:300], src)
    # the flow vectors (cur - ref) are unchanged by a pure shift
    np.testing.assert_allclose(moved.markers_cur[:4] - moved.markers_ref[0], clean.markers_cur[:4] - clean.markers_ref[0],
                               atol=1e-3)


def test_mounting_rotation_rotates_markers_and_flow_about_the_image_centre():
    rotated = _attempt(_with(mount_rot_deg=(5.0, -5.0)))
    clean = _attempt(SimConfig())
    centre = np.array([(320 - 1) / 2, (240 - 1) / 2])
    for pad, deg in ((0, 5.0), (1, -5.0)):
        a, b = clean.markers_ref[pad] - centre, rotated.markers_ref[pad] - centre
        ang = np.degrees(np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], (a * b).sum(1)))
        np.testing.assert_allclose(ang, -deg, atol=1e-3)  # counter-clockwise as displayed = -deg in y-down axes
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), np.linalg.norm(a, axis=1), rtol=1e-5)
    assert not np.array_equal(rotated.frames, clean.frames) and not np.array_equal(rotated.depth, clean.depth)


def test_stiffness_drift_scales_E_and_changes_indentation_as_expected():
    clean = _attempt(SimConfig())
    stiff, soft = _attempt(_with(stiffness_scale=2.0)), _attempt(_with(stiffness_scale=0.5))
    assert stiff.params["E"] == pytest.approx(2 * clean.params["E"])
    assert {k: v for k, v in stiff.params.items() if k != "E"} == {k: v for k, v in clean.params.items() if k != "E"}
    # the grip is force-controlled: a stiffer gel indents less, a softer one more
    assert stiff.depth.max() < clean.depth.max() < soft.depth.max()
    np.testing.assert_array_equal(stiff.markers_ref, clean.markers_ref)  # same marker pattern, same draws


def test_occlusion_drops_the_configured_share_of_markers():
    clean, occluded = _attempt(SimConfig()), _attempt(_with(occlusion=0.3))
    m = clean.markers_ref.shape[1]
    kept = m - round(0.3 * m)
    assert occluded.markers_ref.shape == (2, kept, 2) and occluded.markers_cur.shape == (8, kept, 2)
    for pad in range(2):  # the kept markers are the clean ones, unmoved
        idx = [int(np.flatnonzero((clean.markers_ref[pad] == p).all(1))[0]) for p in occluded.markers_ref[pad]]
        assert len(set(idx)) == kept
        np.testing.assert_array_equal(occluded.markers_cur[4 * pad : 4 * pad + 4], clean.markers_cur[4 * pad : 4 * pad + 4][:, idx])
    assert occluded.frames.mean() > clean.frames.mean()  # fewer dark markers drawn
    np.testing.assert_array_equal(occluded.depth, clean.depth)
    # a different attempt hides different markers
    other = _attempt(_with(occlusion=0.3), seed=(5, 1))
    assert not np.array_equal(other.markers_ref, occluded.markers_ref)
