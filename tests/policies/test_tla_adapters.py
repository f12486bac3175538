"""The VLM adapter registry: `model.adapter` picks the backbone family, is validated in one line, and runs
saved before the key existed still load."""

import json

import numpy as np
import pytest
import torch

from tla.config import from_dict
from tla.policies.tla import TLAPolicy
from tla.policies.tla.adapters import ADAPTERS, VLMAdapter, adapter_for
from tla.policies.tla.config import ModelConfig, tla_preset

torch.set_num_threads(1)


def test_registry_and_validation():
    assert set(ADAPTERS) == {"qwen2_vl"} and all(issubclass(c, VLMAdapter) for c in ADAPTERS.values())
    assert adapter_for(ModelConfig()).name == "qwen2_vl" and adapter_for().name == "qwen2_vl"
    with pytest.raises(ValueError, match=r"^unknown model.adapter 'llava'; choose one of qwen2_vl$"):
        tla_preset("tiny", ["model.adapter=llava"])
    # a config saved before `model.adapter` existed reads the default
    assert from_dict(ModelConfig, {"preset": "tiny", "train_mode": "full"}).adapter == "qwen2_vl"


def test_a_run_saved_without_the_adapter_key_loads(tmp_path):
    from tla.policies.base import make_batch

    p = TLAPolicy.build("tiny", ["generate.max_new_tokens=4", "generate.num_beams=1"])
    p.save(tmp_path)
    meta = json.loads((tmp_path / "policy.json").read_text())
    del meta["config"]["model"]["adapter"]
    (tmp_path / "policy.json").write_text(json.dumps(meta))
    q = TLAPolicy.load(tmp_path)
    assert q.cfg.model.adapter == "qwen2_vl"
    x = np.random.default_rng(0).integers(0, 256, (1, 8, 30, 40, 3), dtype=np.uint8)
    assert p.predict(make_batch(x, ["square"])).texts == q.predict(make_batch(x, ["square"])).texts
