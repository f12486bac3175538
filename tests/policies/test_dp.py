"""Diffusion Policy baseline: shapes/units, overfitting, seeded samplers, EMA, checkpoints, resume, presets."""

import numpy as np
import pytest
import torch

from tla.config import apply_overrides
from tla.policies.base import Prediction, make_batch
from scaffold import synthetic_items, train_steps
from tla.policies.dp import DPConfig, DPPolicy
from tla.policies.dp.model import DiffusionNet

HW = (24, 32)
CFG = DPConfig(image_size=HW, noise_samples=16)
STEPS = 600  # conditioning on the (GroupNorm) encoder "clicks" after ~300 steps on this toy set


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/policies/conftest.py


@pytest.fixture(scope="module")
def items():
    return synthetic_items(4, hw=HW)


@pytest.fixture(scope="module")
def trained(items):
    policy = DPPolicy(CFG)
    policy.fit_normalizer(items)
    losses, _ = train_steps(policy, items, steps=STEPS, lr=5e-4, batch_size=4)
    return policy, losses


def _obs(items):
    return np.stack([it["frames"] for it in items]), np.stack([it["action"] for it in items])


def test_predict_shapes_units_and_seeded_samplers(items):
    obs, _ = _obs(items)
    for sampler in ("ddim", "ddpm"):
        policy = DPPolicy(CFG.replace(sampler=sampler))
        policy.fit_normalizer(items)
        pred = policy.predict(make_batch(obs, ["square"] * len(items)))
        assert (
            isinstance(pred, Prediction) and pred.actions.shape == (4, 3) and pred.actions.dtype == np.float32
        )
        lo, hi = (
            np.stack([it["action"] for it in items]).min(0),
            np.stack([it["action"] for it in items]).max(0),
        )
        assert np.all(pred.actions >= lo - 1e-4) and np.all(
            pred.actions <= hi + 1e-4
        )  # clip_sample: data range
        np.testing.assert_array_equal(pred.actions, policy.predict(make_batch(obs, ["square"] * 4)).actions)
        other = DPPolicy(CFG.replace(sampler=sampler, seed=1))
        other.model.load_state_dict(policy.model.state_dict())
        other.ema.model.load_state_dict(policy.ema.model.state_dict())
        other.normalizer = policy.normalizer
        assert not np.allclose(other.predict(make_batch(obs, ["square"] * 4)).actions, pred.actions)


def test_overfits_small_batch(items, trained):
    policy, losses = trained
    assert np.mean(losses[-20:]) < 0.4 * np.mean(losses[:5])
    obs, y = _obs(items)
    err = np.abs(policy.predict(make_batch(obs, ["square"] * 4)).actions - y).mean()
    print(f"DP overfit: loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-20:]):.3f}, |a - a*| = {err:.3f}")
    assert err < 0.3  # mm / deg; labels span +-1 mm, +-1.5 deg (a random guess is ~0.8)


def test_predict_uses_ema_weights(items, trained):
    policy, _ = trained
    raw = dict(policy.model.named_parameters())
    assert policy.ema.step == STEPS and 0.9 < policy.ema.decay() < 1
    assert any(not torch.equal(p, raw[k]) for k, p in policy.ema.model.named_parameters())
    obs, _ = _obs(items)
    x = policy.collate(items)["obs"]
    ema_actions = policy.normalizer.unnormalize(policy.sample(policy.ema.model, x)[:, 0]).numpy()
    raw_actions = policy.normalizer.unnormalize(policy.sample(policy.model.eval(), x)[:, 0]).numpy()
    pred = policy.predict(make_batch(obs, ["square"] * 4)).actions
    np.testing.assert_allclose(pred, ema_actions, atol=1e-6)
    assert not np.allclose(pred, raw_actions, atol=1e-4)


def test_save_load_identical(tmp_path, items, trained):
    policy, _ = trained
    policy.save(tmp_path / "dp")
    loaded = DPPolicy.load(tmp_path / "dp")
    assert loaded.config == policy.config and loaded.ema.step == policy.ema.step
    obs, _ = _obs(items)
    batch = make_batch(obs, ["square"] * 4)
    np.testing.assert_array_equal(loaded.predict(batch).actions, policy.predict(batch).actions)


def test_shared_trainer_resume_is_exact_and_reloads(tmp_path):
    """Through `tla.train`: stop after 3 steps, resume to 6 == 6 straight steps (weights and EMA, which
    travels in extra_state); the run then reloads with `load_policy` and predicts identically."""
    from tla.policies.registry import build_policy, load_policy
    from tla.train.config import TrainConfig
    from tla.train.synthetic import SyntheticTactile
    from tla.train.trainer import train

    ds = SyntheticTactile(32, size=HW)
    ov = ["image_size=24,32", "noise_samples=2"]
    cfg = TrainConfig(
        max_steps=6, batch_size=4, lr=1e-3, val_fraction=0.0, val_every=0, log_every=1, save_every=2
    )
    straight = build_policy("dp", "tiny", ov)
    train(straight, ds, cfg, tmp_path / "a")
    part = build_policy("dp", "tiny", ov)
    assert not train(part, ds, cfg, tmp_path / "b", stop_after=3)["finished"]
    resumed = build_policy("dp", "tiny", ov)
    assert train(resumed, ds, cfg, tmp_path / "b", resume=True)["finished"]
    assert resumed.ema.step == straight.ema.step == 6
    for mod_a, mod_b in ((straight.model, resumed.model), (straight.ema.model, resumed.ema.model)):
        sa, sb = mod_a.state_dict(), mod_b.state_dict()
        assert max((sa[k] - sb[k]).abs().max().item() for k in sa) <= 1e-6
    loaded = load_policy(tmp_path / "b")
    obs = np.stack([ds[i]["frames"] for i in range(4)])
    batch = make_batch(obs, ["square"] * 4)
    np.testing.assert_array_equal(loaded.predict(batch).actions, resumed.predict(batch).actions)


def test_presets_and_paper_size():
    cfg = apply_overrides(DPConfig.preset_config("paper"), ["sampler=ddpm", "ddim_steps=20"])
    assert cfg.down_dims == (512, 1024, 2048) and cfg.sampler == "ddpm" and cfg.ddim_steps == 20
    with torch.device("meta"):
        net = DiffusionNet(cfg)
    n_enc = sum(p.numel() for p in net.encoder.parameters())
    n_unet = sum(p.numel() for p in net.unet.parameters())
    print(f"DP paper: encoder {n_enc / 1e6:.2f}M (ResNet-18 GN), U-Net {n_unet / 1e6:.1f}M")
    assert 11.0e6 < n_enc < 11.4e6 and 200e6 < n_unet < 300e6
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(ValueError):
        DPPolicy(CFG.replace(horizon=3))
