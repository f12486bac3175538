"""Contact reasoning (`answer=contact_action`) and constrained decoding (`generate.constrained`): the contact
facts follow the simulator's symmetries, every answer round-trips through the de-tokenizer, a malformed one
is a counted parse failure, and constrained beam search never produces a parse failure on random weights."""

import numpy as np
import pytest
import regex
import torch

from tla.data.text import (
    ANSWER_FORMATS,
    answer_pattern,
    decode_action,
    encode_action,
    encode_answer,
    encode_contact,
    longest_answer,
)
from tla.sim.contact import PADS, RIM_SIDES, TWISTS, ContactFacts, contact_facts, rim_side

TINY = ["composite_size=56", "generate.num_beams=2"]


# --- the facts, from the simulator ----------------------------------------------------------------------
def test_rim_side_sectors():
    assert [rim_side(np.cos(a), np.sin(a)) for a in np.radians(np.arange(0, 360, 45))] == list(RIM_SIDES)
    assert rim_side(1.0, 0.41) == "+x" and rim_side(1.0, 0.42) == "+x+y"  # tan(22.5 deg) = 0.414


def test_an_inserting_pose_has_no_contact():
    assert contact_facts("square", 2.0, [0.3, -0.2, 0.0]) == ContactFacts.none()
    assert encode_contact(ContactFacts.none()) == "contact: none"


@pytest.mark.parametrize("shape", ["square", "hexagon"])
def test_facts_follow_the_mirror_symmetries_of_the_peg(shape):
    # a pure x error lands on the +x rim; the grasp is symmetric about y = 0: no pad presses harder, no twist
    px = contact_facts(shape, 2.0, [2.0, 0.0, 0.0])
    assert px == ContactFacts("+x", "even", "none")
    assert contact_facts(shape, 2.0, [-2.0, 0.0, 0.0]) == ContactFacts("-x", "even", "none")
    # mirroring y swaps the rim side's y sign and the pads, and reverses the twist
    a = contact_facts(shape, 2.0, [1.5, 1.8, 2.0])
    b = contact_facts(shape, 2.0, [1.5, -1.8, -2.0])
    flip = {"left": "right", "right": "left", "even": "even", "ccw": "cw", "cw": "ccw", "none": "none"}
    assert a.rim == "+x+y" and b.rim == "+x-y"
    assert b.pad == flip[a.pad] != "even" and b.twist == flip[a.twist] != "none"


def test_a_twist_error_turns_the_peg_back_inside_the_grasp():
    # a corner on the chamfer pushes the peg back toward alignment: erz > 0 turns it clockwise
    assert contact_facts("square", 2.0, [1.8, 0.0, 3.0]).twist == "cw"
    assert contact_facts("square", 2.0, [1.8, 0.0, -3.0]).twist == "ccw"


# --- the answer language ---------------------------------------------------------------------------------
ALL_FACTS = [ContactFacts.none()] + [ContactFacts(r, p, t) for r in RIM_SIDES for p in PADS for t in TWISTS]


def test_every_contact_answer_round_trips_and_matches_its_grammar():
    rng = np.random.default_rng(0)
    pattern = regex.compile(answer_pattern("contact_action"))
    for facts in ALL_FACTS:
        action = rng.uniform([-2, -2, -5], [2, 2, 5])
        text = encode_answer(action, facts=facts)
        assert text.startswith(encode_contact(facts) + "; action: [")
        assert pattern.fullmatch(text), text
        np.testing.assert_allclose(decode_action(text), np.rint(action * 100) / 100)
    for fmt in ANSWER_FORMATS:
        assert regex.fullmatch(answer_pattern(fmt), longest_answer(fmt))
    assert regex.fullmatch(answer_pattern("action"), encode_action([0.0, -0.0, 1.234]))  # '[0, 0, 123]'


@pytest.mark.parametrize("text", [
    "contact: +x rim, left pad harder, twist cw",  # no action
    "contact: +x rim, left pad harder, twist cw; action: [12, 3",  # cut short
    "contact: +x rim, left pad harder, twist cw; action: [a, b, c]",
    "contact: +x rim; action: ",
    "",
])
def test_a_malformed_contact_answer_is_a_parse_failure_not_a_crash(text):
    assert decode_action(text) is None


def test_the_action_is_read_after_the_contact_statement():
    assert np.allclose(decode_action("contact: none; action: [10, -20, 30]"), [0.1, -0.2, 0.3])
    # a stray bracket before 'action: ' is not taken for the action
    assert np.allclose(decode_action("[1, 1, 1] contact: none; action: [10, -20, 30]"), [0.1, -0.2, 0.3])


# --- the policy ------------------------------------------------------------------------------------------
def test_contact_answers_need_the_budget_to_hold_them():
    from tla.policies.tla.config import tla_preset

    with pytest.raises(ValueError, match="generate.max_new_tokens=78"):
        tla_preset("tiny", ["answer=contact_action"])
    with pytest.raises(ValueError, match="unknown answer format"):
        tla_preset("tiny", ["answer=essay"])
    assert tla_preset("tiny", ["answer=contact_action", "generate.max_new_tokens=78"]).answer == "contact_action"
    with pytest.raises(ValueError, match="generate.max_new_tokens=22"):  # constrained: the whole answer fits
        tla_preset("tiny", ["generate.constrained=true", "generate.max_new_tokens=6"])
    tla_preset("tiny", ["generate.max_new_tokens=6"])  # a short free answer is the caller's choice


def test_the_training_target_states_the_simulators_contact_then_the_action(smoke_ds):
    from tla.data.dataset import TactileDataset
    from tla.policies.tla.policy import TLAPolicy

    policy = TLAPolicy.build("tiny", [*TINY, "answer=contact_action", "generate.max_new_tokens=78"])
    ds = TactileDataset(smoke_ds[0], "sp_train", modality="marker_flow")
    item = ds[0]
    facts = contact_facts(item["shape"], item["clearance"], item["error"])
    assert facts.rim is not None  # every stored sample is a failed attempt
    assert policy.answer(item) == f"{encode_contact(facts)}; action: {encode_action(item['action'])}"
    # the tokenizer learned the contact words: a statement is a few tokens, not one per character
    assert len(policy.tokenizer(encode_contact(facts))["input_ids"]) < len(encode_contact(facts)) / 2
    loss, _ = policy.loss(policy.model, policy.collate([ds[i] for i in range(2)]))
    assert torch.isfinite(loss)
    with pytest.raises(KeyError, match="needs each item's shape, clearance and error"):
        policy.answer({"action": np.zeros(3), "shape": "square"})


@pytest.mark.parametrize("fmt", ANSWER_FORMATS)
def test_constrained_decoding_never_fails_to_parse_on_random_weights(fmt, tmp_path):
    from tla.policies.tla.policy import TLAPolicy

    torch.manual_seed(0)
    policy = TLAPolicy.build("tiny", [*TINY, f"answer={fmt}", "generate.max_new_tokens=78"])
    rng = np.random.default_rng(1)
    batch = {"observation": rng.integers(0, 256, (3, 8, 48, 64, 3), dtype=np.uint8), "shape": ["square"] * 3}
    free = policy.predict(batch)
    assert not free.parse_ok.any()  # random weights babble: what the constraint is for
    pattern = regex.compile(answer_pattern(fmt))
    for decode in ("top", "mean"):
        pred = policy.predict(batch, constrained=True, decode=decode)
        assert pred.parse_ok.all() and pred.extras["parse_failures"] == 0
        assert all(pattern.fullmatch(t) for t in pred.texts), pred.texts
        assert np.isfinite(pred.actions).all()
    # a run saved with the option decodes constrained after loading (its tokenizer travels with it)
    policy.cfg.generate.constrained = True
    policy.save(tmp_path / "p")
    loaded = TLAPolicy.load(tmp_path / "p")
    assert loaded.cfg.answer == fmt and loaded.predict(batch).parse_ok.all()
