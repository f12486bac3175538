"""Behaviour-cloning baseline: shapes/units, overfitting, checkpoints, presets (tiny configs, CPU)."""

import numpy as np
import pytest
import torch
from transformers import ResNetConfig, ResNetModel

from tla.config import apply_overrides
from tla.policies.base import Prediction, TrainablePolicy, make_batch
from tla.policies.bc import BCConfig, BCPolicy
from tla.policies.bc.model import BCNet
from scaffold import synthetic_items, train_steps

CFG = BCConfig(image_size=(48, 64))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/policies/conftest.py


@pytest.fixture(scope="module")
def items():
    return synthetic_items(16)


@pytest.fixture(scope="module")
def trained(items):
    policy = BCPolicy(CFG)
    policy.fit_normalizer(items)
    losses, _ = train_steps(policy, items, steps=150, lr=3e-3)
    return policy, losses


def _obs(items):
    return np.stack([it["frames"] for it in items]), np.stack([it["action"] for it in items])


def test_predict_shapes_units_and_determinism(items):
    policy = BCPolicy(CFG)
    assert isinstance(policy, TrainablePolicy)
    policy.fit_normalizer(items)
    obs, _ = _obs(items[:5])
    pred = policy.predict(make_batch(obs, ["square"] * 5))
    assert isinstance(pred, Prediction) and pred.actions.shape == (5, 3) and pred.actions.dtype == np.float32
    assert np.isfinite(pred.actions).all() and pred.texts is None
    np.testing.assert_array_equal(pred.actions, policy.predict(make_batch(obs, ["square"] * 5)).actions)
    one = policy.predict(make_batch(obs[2], "square")).actions[0]  # one observation, one shape
    np.testing.assert_allclose(one, pred.actions[2], atol=1e-5)
    with pytest.raises(ValueError, match=r"'observation' uint8 \(B, 8, H, W, 3\).*got shape \(5, 4,"):
        policy.predict(make_batch(obs[:, :4], ["square"] * 5))


def test_normalizer_and_composite_input(items):
    policy = BCPolicy(CFG.replace(input_format="composite"))
    policy.fit_normalizer(items)
    acts = np.stack([it["action"] for it in items])
    np.testing.assert_allclose(policy.normalizer.shift, acts.mean(0), atol=1e-5)
    batch = policy.collate(items[:2])
    assert batch["obs"].shape == (2, 3, 48, 64) and batch["obs"].abs().max() <= 1
    assert policy.predict(make_batch(_obs(items[:2])[0], ["square"] * 2)).actions.shape == (2, 3)


def test_overfits_small_batch(items, trained):
    policy, losses = trained
    assert np.mean(losses[-10:]) < 0.15 * np.mean(losses[:3])
    obs, y = _obs(items)
    err = np.abs(policy.predict(make_batch(obs, ["square"] * len(items))).actions - y)
    assert err.mean() < 0.1, err.mean(0)  # mm / deg, labels span +-1 mm, +-1.5 deg


def test_save_load_identical(tmp_path, items, trained):
    policy, _ = trained
    policy.save(tmp_path / "bc")
    loaded = BCPolicy.load(tmp_path / "bc")
    assert loaded.config == policy.config
    obs, _ = _obs(items)
    batch = make_batch(obs, ["square"] * 16)
    np.testing.assert_array_equal(loaded.predict(batch).actions, policy.predict(batch).actions)


def test_presets_and_overrides():
    paper = BCConfig.preset_config("paper")
    cfg = apply_overrides(paper, ["image_size=128,160", "loss=mse"])
    assert cfg.image_size == (128, 160) and cfg.loss == "mse" and cfg.layer_type == "bottleneck"
    with torch.device("meta"):
        net = BCNet(paper)
    n_trunk = sum(p.numel() for p in net.trunk.parameters())
    print(f"BC paper trunk (ResNet-50, 24-ch stem): {n_trunk / 1e6:.2f}M params")
    assert 23.4e6 < n_trunk < 23.7e6  # ResNet-50 trunk 23.5M + 65.9k for the 24-channel stem


def test_pretrained_stem_inflation(tmp_path):
    src = ResNetModel(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], layer_type="basic")
    )
    src.save_pretrained(tmp_path / "rn")
    cfg = CFG.replace(embedding_size=8, hidden_sizes=(8, 8, 16, 16), pretrained_dir=str(tmp_path / "rn"))
    net = BCNet(cfg)
    w_src = src.embedder.embedder.convolution.weight
    w = net.trunk.embedder.embedder.convolution.weight
    assert w.shape[1] == 24
    torch.testing.assert_close(w[:, 3:6] * 8, w_src)


def test_shared_trainer_and_registry(tmp_path):
    from tla.policies.registry import build_policy, load_policy
    from tla.train.config import TrainConfig
    from tla.train.synthetic import SyntheticTactile
    from tla.train.trainer import train

    ds = SyntheticTactile(32, size=(24, 32))
    policy = build_policy("bc", "tiny", ["image_size=24,32"])
    cfg = TrainConfig(max_steps=4, batch_size=8, lr=1e-3, val_fraction=0.25, val_every=2, log_every=1)
    assert train(policy, ds, cfg, tmp_path / "run")["finished"]
    loaded = load_policy(tmp_path / "run")
    assert isinstance(loaded, BCPolicy) and loaded.config.image_size == (24, 32)
    obs = np.stack([ds[i]["frames"] for i in range(4)])
    batch = make_batch(obs, ["square"] * 4)
    np.testing.assert_array_equal(loaded.predict(batch).actions, policy.predict(batch).actions)
