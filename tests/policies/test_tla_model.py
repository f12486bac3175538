"""TLA backbone: tiny determinism, LoRA placement, the 7B architecture on the meta device, inference."""

import numpy as np
import pytest
import torch

from tla.policies.base import Prediction
from tla.policies.tla import TLAPolicy
from tla.policies.tla.config import ModelConfig
from tla.policies.tla.model import apply_train_mode, count_parameters, qwen2vl_7b_config

torch.set_num_threads(1)  # 2 shared cores, 2 test workers: one thread each is fastest


def obs(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 30, 40, 3), dtype=np.uint8)


def test_tiny_is_deterministic_and_fully_trainable():
    a, b = TLAPolicy.build("tiny"), TLAPolicy.build("tiny")
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    trainable, total = a.parameter_counts()
    assert trainable == total and 2e5 < total < 2e6
    c = TLAPolicy.build("tiny", ["model.seed=1"])
    assert not torch.equal(c.model.state_dict()["lm_head.weight"], sa["lm_head.weight"])


def test_lora_on_tiny_targets_language_model_only():
    p = TLAPolicy.build("tiny", ["model.train_mode=lora", "model.lora_rank=4", "model.position_table=false"])
    lora = [n for n, _ in p.model.named_modules() if n.endswith("lora_A")]
    assert lora and all(".language_model.layers." in n for n in lora)
    assert len(lora) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    trainable = [n for n, q in p.model.named_parameters() if q.requires_grad]
    assert all("lora_" in n for n in trainable)
    # a position table is new, so it trains beside the adapters; nothing else of the vision tower does
    t = TLAPolicy.build("tiny", ["model.train_mode=lora", "model.lora_rank=4"])
    extra = [n for n, q in t.model.named_parameters() if q.requires_grad and "lora_" not in n]
    assert extra == ["base_model.model.model.visual.position_table.weight"]


def test_qwen2vl_7b_lora_on_meta_device():
    with torch.device("meta"):
        model = Qwen2VLFor7B()
        model = apply_train_mode(model, ModelConfig(preset="pretrained", path="unused", train_mode="lora"))
    trainable, total = count_parameters(model)
    print(f"Qwen2-VL-7B + LoRA r=16: trainable {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    assert trainable == 16 * 28 * (2 * 3584 + 2 * (3584 + 512) + 2 * 3584 + 3 * (3584 + 18944))  # 40,370,176
    assert 8.0e9 < total < 8.7e9
    assert not any("lora_" in n for n, _ in model.named_modules() if ".visual." in n)
    assert not any(q.requires_grad for n, q in model.named_parameters() if ".visual." in n)


def Qwen2VLFor7B():
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration(qwen2vl_7b_config())


def test_predict_untrained_is_batched_and_never_raises():
    p = TLAPolicy.build("tiny", ["generate.max_new_tokens=6"])
    pred = p.predict({"observation": obs(3), "shape": ["square", "triangle", "hexagon"]})
    assert isinstance(pred, Prediction) and pred.actions.shape == (3, 3) and len(pred.texts) == 3
    # a random model writes garbage: fallback zeros, counted, no exception
    bad = ~pred.parse_ok
    assert np.all(pred.actions[bad] == 0) and pred.extras["parse_failures"] == int(bad.sum())


def test_batched_left_padded_greedy_matches_single():
    p = TLAPolicy.build("tiny", ["generate.max_new_tokens=5"])
    o, shapes = obs(2, seed=3), ["square", "hexagon with a chamfer"]  # different lengths: left padding
    batched = p.predict({"observation": o, "shape": shapes}, num_beams=1).texts
    single = [p.predict({"observation": o[i : i + 1], "shape": shapes[i : i + 1]}, num_beams=1).texts[0]
              for i in range(2)]
    assert batched == single


def test_lora_save_load_round_trip(tmp_path):
    from tla.policies.registry import load_policy

    p = TLAPolicy.build("tiny", ["model.train_mode=lora", "model.lora_rank=4", "generate.max_new_tokens=6"])
    with torch.no_grad():  # lora_B starts at zero; make the adapter matter
        for n, q in p.model.named_parameters():
            if "lora_B" in n:
                q.normal_(0, 0.5)
    p.save(tmp_path / "policy")
    assert (tmp_path / "policy" / "adapter" / "adapter_config.json").exists()
    q = load_policy(tmp_path / "policy")
    sa, sb = p.model.state_dict(), q.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    o = obs(2)
    batch = {"observation": o, "shape": ["square", "round"]}
    assert p.predict(batch).texts == q.predict(batch).texts


def test_lora_skips_qwen25_vision_mlp_with_lm_names():
    """Qwen2.5-VL's vision MLP is named gate/up/down_proj like the LM's: targeting by path must skip it."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = {
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]},
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
    }
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))
        assert any(n.endswith("visual.blocks.0.mlp.gate_proj") for n, _ in model.named_modules())
        model = apply_train_mode(model, ModelConfig(preset="pretrained", path="unused", train_mode="lora"))
    adapted = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert len(adapted) == 2 * 7 and not any(".visual." in n for n in adapted)


def test_pretrained_path_lora_round_trip(tmp_path):
    """The `model.path` code path (from_pretrained + the checkpoint's tokenizer + LoRA), on a local
    checkpoint written from the tiny backbone: the vision tower stays frozen, the adapter reloads exactly."""
    from tla.policies.registry import load_policy

    ckpt = tmp_path / "ckpt"
    base = TLAPolicy.build("tiny")
    base.model.save_pretrained(ckpt)
    base.tokenizer.save_pretrained(ckpt)
    ov = [f"model.path={ckpt}", "composite_size=224", "generate.max_new_tokens=6", "model.lora_rank=4"]
    p = TLAPolicy.build("paper", ov)
    assert p.cfg.model.train_mode == "lora"
    assert not any(q.requires_grad for n, q in p.model.named_parameters() if ".visual." in n)
    with torch.no_grad():
        for n, q in p.model.named_parameters():
            if "lora_B" in n:
                q.normal_(0, 0.5)
    p.save(tmp_path / "policy")
    q = load_policy(tmp_path / "policy")
    o = obs(2)
    batch = {"observation": o, "shape": ["square", "round"]}
    assert p.predict(batch).texts == q.predict(batch).texts


def test_mean_action_weights_beams_by_probability_and_skips_unparsed():
    from tla.policies.tla.policy import mean_action

    nan = [np.nan] * 3
    actions = np.array([
        [[0.0, 1.0, -1.5], [0.4, 1.0, -0.5], nan],  # p = 0.6, 0.2, (unparsed) -> renormalised 0.75 / 0.25
        [[1.0, 0.0, 0.0], nan, nan],  # one parsed beam: its action
        [nan, nan, nan],  # nothing parsed: NaN (predict falls back to zeros and counts it)
    ])
    log_probs = np.log([[0.6, 0.2, 0.2], [0.1, 0.5, 0.4], [0.5, 0.3, 0.2]])
    out = mean_action(actions, log_probs)
    np.testing.assert_allclose(out[0], [0.1, 1.0, -1.25])
    np.testing.assert_allclose(out[1], [1.0, 0.0, 0.0])
    assert np.isnan(out[2]).all()
    # very unlikely beams (log p ~ -1000) must not underflow to 0/0
    np.testing.assert_allclose(mean_action(actions[:1, :2], np.array([[-1000.0, -1000.0 - np.log(3)]]))[0],
                               [0.1, 1.0, -1.25])


def test_decode_mean_with_one_beam_is_the_top_answer_and_mean_never_raises(monkeypatch):
    p = TLAPolicy.build("tiny", ["generate.max_new_tokens=6"])
    o, shapes = obs(2, seed=5), ["square", "round"]
    batch = {"observation": o, "shape": shapes}
    top, mean = p.predict(batch, num_beams=1, decode="top"), p.predict(batch, num_beams=1, decode="mean")
    assert top.texts == mean.texts and np.array_equal(top.actions, mean.actions)
    pred = p.predict(batch, num_beams=3, decode="mean")  # an untrained model: garbage, counted, no raise
    assert pred.actions.shape == (2, 3) and pred.extras["parse_failures"] == int((~pred.parse_ok).sum())

    # the aggregation on known beams: the text is the top beam's, the action the weighted mean
    def beams(observations, shapes, n_beams, returned, constrained):
        assert not constrained  # the run's default: free beam search
        assert returned == n_beams == 2
        texts = np.array([["[0, 100, -150]", "[40, 100, -50]"], ["oops", "[100, 0, 0]"]], dtype=object)
        return texts, np.log([[0.75, 0.25], [0.9, 0.1]])

    monkeypatch.setattr(p, "_generate", beams)
    pred = p.predict(batch, num_beams=2, decode="mean")
    assert pred.texts == ["[0, 100, -150]", "oops"]
    np.testing.assert_allclose(pred.actions, [[0.1, 1.0, -1.25], [1.0, 0.0, 0.0]])
    assert pred.parse_ok.tolist() == [True, True]
    with pytest.raises(ValueError, match="generate.decode"):
        p.predict(batch, decode="median")


def test_a_new_lora_policy_on_a_checkpoint_is_a_function_of_model_seed(tmp_path):
    """LoRA's A matrices are random: they come from model.seed, not from what the process drew before
    (the same run used to give other weights after another stage in the same process)."""
    ckpt = tmp_path / "ckpt"
    base = TLAPolicy.build("tiny")
    base.model.save_pretrained(ckpt)
    base.tokenizer.save_pretrained(ckpt)
    ov = [f"model.path={ckpt}", "composite_size=224", "model.lora_rank=4"]

    def adapters(seed: int, draws_before: int) -> dict:
        torch.rand(draws_before)  # another stage ran earlier in this process
        p = TLAPolicy.build("paper", [*ov, f"model.seed={seed}"])
        return {n: q.detach().clone() for n, q in p.model.named_parameters() if "lora_A" in n}

    a, b, c = adapters(0, 0), adapters(0, 1000), adapters(1, 0)
    assert a and all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
