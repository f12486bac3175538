"""Every modality and every TLA layout goes the whole way: simulator -> dataset -> a policy's collate, loss
and predict, and the env's live observation in the same modality -> the same policy's predict (tiny configs).
"""

import numpy as np
import pytest
import torch

from tla.sim.modality import MODALITIES

BC = ["image_size=[24,32]"]
DP = ["image_size=[24,32]", "noise_samples=1", "ddim_steps=2"]
TLA = ["composite_size=84", "frame_size=28", "generate.max_new_tokens=6", "generate.num_beams=2"]
LAYOUTS = ("composite", "frames", "video", "pairs")


@pytest.fixture(scope="module")
def smoke(smoke_ds):
    from tla.config import from_dict
    from tla.sim.config import SimConfig

    root, info = smoke_ds  # the session's smoke dataset (tests/conftest.py)
    return root, from_dict(SimConfig, info["sim_config"])


CASES = [("bc", m, BC) for m in MODALITIES] + [("dp", m, DP) for m in MODALITIES] + [
    ("tla", m, [*TLA, f"layout={layout}"]) for m in MODALITIES for layout in LAYOUTS]


@pytest.mark.parametrize("policy_name,modality,overrides", CASES,
                         ids=[f"{p}-{m}-{o[-1].split('=')[1] if p == 'tla' else ''}" for p, m, o in CASES])
def test_modality_and_layout_round_trip(smoke, policy_name, modality, overrides):
    from tla.data.dataset import TactileDataset
    from tla.policies.base import batch_for
    from tla.policies.registry import build_policy
    from tla.sim.env import PegInHoleEnv

    data, sim_cfg = smoke
    torch.manual_seed(0)
    ds = TactileDataset(data, "sp_train", modality=modality)
    policy = build_policy(policy_name, "tiny", [*overrides, f"modality={modality}"])
    assert policy.modality == modality
    items = [ds[i] for i in range(2)]
    assert items[0]["frames"].shape == (8, *ds.frame_size, 3) and items[0]["frames"].dtype == np.uint8
    if hasattr(policy, "fit_normalizer"):
        policy.fit_normalizer(items)
    loss, _ = policy.loss(policy.model, policy.collate(items))
    assert torch.isfinite(loss)

    from_data = policy.predict(batch_for(policy, np.stack([it["frames"] for it in items]),
                                         [it["shape"] for it in items]))
    assert from_data.actions.shape == (2, 3) and np.isfinite(from_data.actions).all()

    env = PegInHoleEnv(sim_cfg, modality=modality)
    obs, info = env.reset(seed=3)
    assert obs.shape == items[0]["frames"].shape  # the live observation is what the dataset stores
    live = policy.predict(batch_for(policy, obs, [info["shape"]], errors=[info["error"]],
                                    clearances=[info["clearance"]]))
    assert live.actions.shape == (1, 3) and np.isfinite(live.actions).all()
