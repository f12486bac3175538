"""Two training options of the TLA's answer: the signed answer text (`signed_answer`: '+' before positive
numbers, so each axis's direction is one token) and the auxiliary action loss (`action_aux_weight`: a linear
head on the answer-start state, training only). Round-trips, the grammar, the state the head reads, the loss
it adds (and only while training), and a saved policy that is the text model alone."""

import numpy as np
import pytest
import regex
import torch
from safetensors import safe_open

from tests.scaffold import synthetic_items
from tla.data.text import answer_pattern, decode_action, encode_action, encode_answer
from tla.policies.tla.action_aux import ACTION_CAPS, ActionAuxHead, answer_start_states
from tla.policies.tla.policy import AUX_TARGET, TLAPolicy
from tla.sim.contact import ContactFacts

SMALL = ["composite_size=56", "generate.num_beams=2", "generate.max_new_tokens=22"]


# --- the signed answer -----------------------------------------------------------------------------------
def test_signed_answers_round_trip_and_match_only_their_grammar():
    assert encode_action([0.27, -0.08, 0.0], signed=True) == "[+27, -8, 0]"
    assert encode_action([0.27, -0.08, -0.001], signed=True) == "[+27, -8, 0]"  # rounds to 0: no sign
    assert encode_action([0.27, -0.08, 0.0]) == "[27, -8, 0]"  # the paper's text is unchanged
    signed, plain = regex.compile(answer_pattern("action", True)), regex.compile(answer_pattern("action"))
    rng = np.random.default_rng(0)
    for action in rng.uniform(-2, 2, (200, 3)):
        text = encode_action(action, signed=True)
        assert signed.fullmatch(text) and bool(plain.fullmatch(text)) == ("+" not in text)
        np.testing.assert_allclose(decode_action(text), np.rint(action * 100) / 100)
    assert not plain.fullmatch("[+27, -8, 0]") and not signed.fullmatch("[27, -8, 0]")
    assert not signed.fullmatch("[+0, -8, 0]")  # zero has no sign
    contact = encode_answer([0.1, 0.2, -0.3], facts=ContactFacts("+x", "even", "none"), signed=True)
    assert regex.compile(answer_pattern("contact_action", True)).fullmatch(contact), contact


def test_a_signed_policy_trains_on_signed_text_its_tokenizer_knows():
    p = TLAPolicy.build("tiny", [*SMALL, "signed_answer=true"])
    item = {"action": np.array([0.27, -0.08, 0.0]), "shape": "square"}
    assert p.answer(item) == "[+27, -8, 0]"
    ids = p.tokenizer("[+27, -8, 0]")["input_ids"]
    pieces = [p.tokenizer.decode([i]) for i in ids]
    assert "".join(pieces) == "[+27, -8, 0]"
    # the direction comes before and apart from the digits: no token holds a sign and a digit
    assert not any(set(t) & set("+-") and set(t) & set("0123456789") for t in pieces), pieces
    assert p.describe()["signed_answer"] is True
    assert TLAPolicy.build("tiny", SMALL).answer(item) == "[27, -8, 0]"


# --- the auxiliary action loss ---------------------------------------------------------------------------
def test_the_head_reads_the_state_before_the_first_answer_token():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, -100, -100, 9, 2]])  # answers start at 2 and 3
    states = answer_start_states(hidden, labels)
    assert torch.equal(states, torch.stack([hidden[0, 1], hidden[1, 2]]))
    with pytest.raises(ValueError, match="needs an answer in every training row"):
        answer_start_states(hidden, torch.full((2, 5), -100))
    with pytest.raises(ValueError, match="no prompt state"):
        answer_start_states(hidden, torch.tensor([[1, 2, 3, 4, 5], [-100, 1, 2, 3, 4]]))


def test_the_head_loss_is_smooth_l1_over_the_label_caps():
    head = ActionAuxHead(3)
    with torch.no_grad():
        head.proj.weight.copy_(torch.eye(3))
        head.proj.bias.zero_()
    hidden = torch.tensor([[[0.5, -0.2, 0.3], [9.0, 9.0, 9.0]]])  # state 0 predicts the answer at position 1
    labels = torch.tensor([[-100, 5]])
    target = torch.tensor([[0.5, -0.2, 0.45]])  # mm, mm, deg: over the caps (1, 1, 1.5) exactly the state
    assert ACTION_CAPS == (1.0, 1.0, 1.5)
    with torch.no_grad():
        assert float(head.loss(hidden, labels, target)) == pytest.approx(0.0, abs=1e-7)
        far = torch.tensor([[1.5, -0.2, 0.45]])  # x off by 1.0 (> beta): L1 - beta / 2, averaged over 3 axes
        assert float(head.loss(hidden, labels, far)) == pytest.approx((1.0 - 0.05) / 3, rel=1e-6)


def test_aux_loss_adds_to_the_text_loss_only_while_training_and_is_not_saved(tmp_path):
    items = synthetic_items(4)
    plain = TLAPolicy.build("tiny", SMALL)
    aux = TLAPolicy.build("tiny", [*SMALL, "action_aux_weight=0.5"])
    # the head is made last: every other weight starts as without it
    sp, sa = plain.model.state_dict(), aux.model.state_dict()
    assert set(sa) - set(sp) == {"action_aux_head.proj.weight", "action_aux_head.proj.bias"}
    assert all(torch.equal(sp[k], sa[k]) for k in sp)

    batch = aux.collate(items)
    np.testing.assert_array_equal(batch[AUX_TARGET].numpy(), np.stack([it["action"] for it in items]))
    assert AUX_TARGET not in plain.collate(items)
    plain.model.train(), aux.model.train()
    text_loss = float(plain.loss(plain.model, plain.collate(items))[0])
    loss, metrics = aux.loss(aux.model, batch)
    assert metrics["text_loss"] == pytest.approx(text_loss, rel=1e-6)
    inputs = {k: v for k, v in batch.items() if k != AUX_TARGET}
    with torch.no_grad():
        hidden = aux.model(**inputs, output_hidden_states=True).hidden_states[-1]
        expected = aux.aux_head.loss(hidden, batch["labels"], batch[AUX_TARGET])
    assert metrics["aux_action"] == pytest.approx(float(expected), rel=1e-6)
    assert float(loss) == pytest.approx(text_loss + 0.5 * float(expected), rel=1e-6)
    loss.backward()
    assert aux.aux_head.proj.weight.grad.abs().sum() > 0  # the head trains with the model
    aux.model.eval()  # validation: the text's loss alone, comparable across settings
    assert float(aux.loss(aux.model, batch)[0]) == pytest.approx(text_loss, rel=1e-6)

    aux.save(tmp_path / "p")
    with safe_open(str(tmp_path / "p" / "model" / "model.safetensors"), "pt") as f:
        assert not any("action_aux" in k for k in f.keys())  # noqa: SIM118 (safe_open has no __iter__)  # a stock VLM checkpoint
    assert hasattr(aux.model, "action_aux_head")  # and the live policy keeps training with it
    loaded = TLAPolicy.load(tmp_path / "p")
    obs = {"observation": np.stack([it["frames"] for it in items]), "shape": ["square"] * 4}
    assert loaded.predict(obs).texts == aux.predict(obs).texts
    assert loaded.cfg.action_aux_weight == 0.5 and loaded.aux_head is not None  # can be fine-tuned further
