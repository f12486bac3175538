"""TLA prompt, labels, image tokens, tokenizer and the action codec."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tla.data.text import decode_action, encode_action, instruction
from tla.policies.tla.processing import IGNORE, TLAProcessor
from tla.policies.tla.tokenizer import train_tiny_tokenizer


@pytest.fixture(scope="module")
def proc():
    return TLAProcessor(train_tiny_tokenizer(), image_size=224)


def obs(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 30, 40, 3), dtype=np.uint8)


def test_prompt_format_is_spec5(proc):
    text = proc.prompt("square", 2)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>"
        + instruction("square")
        + "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_label_masking_is_exact(proc):
    answers = ["[-90, 40, 13]", "[0, -100, 150]", "[7, 8, -9]"]
    b = proc.batch(obs(3), ["square", "triangle", "round"], answers)
    tok = proc.tokenizer
    for i, ans in enumerate(answers):
        ids, labels, mask = b["input_ids"][i], b["labels"][i], b["attention_mask"][i]
        target = tok(ans, add_special_tokens=False)["input_ids"] + [proc.end_id]
        n = int(mask.sum())
        # right padding: real tokens first; the answer + <|im_end|> are the last real tokens
        assert mask[:n].all() and not mask[n:].any()
        assert labels[n - len(target) : n].tolist() == target
        assert ids[n - len(target) : n].tolist() == target
        assert (labels[: n - len(target)] == IGNORE).all() and (labels[n:] == IGNORE).all()
        assert tok.decode(labels[labels != IGNORE]) == ans + "<|im_end|>"
    # image tokens are marked for M-RoPE and counted right (224 px -> 16 x 16 patches -> 64 tokens)
    assert (b["mm_token_type_ids"].sum(1) == 64).all()
    assert b["image_grid_thw"].tolist() == [[1, 16, 16]] * 3


def test_generation_batch_is_left_padded(proc):
    b = proc.batch(obs(2), ["square", "hexagon with a chamfer"])  # different prompt lengths
    assert "labels" not in b
    assert b["attention_mask"][:, -1].all()  # every prompt ends at the last column
    assert not b["attention_mask"].all()
    assert (b["input_ids"][:, -3:] == b["input_ids"][0, -3:]).all()  # "...<|im_start|>assistant\n"


def test_616_composite_is_1936_patches_484_tokens():
    p = TLAProcessor(train_tiny_tokenizer(), image_size=616)
    inputs, tokens = p.visual([p.lay_out(o) for o in obs(1)])
    pix, grid = inputs["pixel_values"], inputs["image_grid_thw"]
    assert grid.tolist() == [[1, 44, 44]] and pix.shape == (1936, 3 * 2 * 14 * 14)
    assert tokens == [[484]]
    ids, _ = p.encode("square", 484)
    assert ids.count(p.placeholder_ids["image"]) == 484


def test_tokenizer_deterministic_and_one_token_per_digit():
    a, b = train_tiny_tokenizer(), train_tiny_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    toks = a.tokenize("[-105, 40, 13]")
    assert [t for t in toks if any(c.isdigit() for c in t)] == ["1", "0", "5", "4", "0", "1", "3"]
    for s in (
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|endoftext|>",
    ):
        assert len(a.tokenize(s)) == 1
    text = "[-90, 40, 13]"
    assert a.decode(a(text)["input_ids"]) == text


@settings(deadline=None)  # pure arithmetic; the default 200 ms deadline fails on a loaded host, not on a bug
@given(st.tuples(*[st.floats(-3, 3, allow_nan=False)] * 3))
def test_codec_round_trip(action):
    back = decode_action(encode_action(action))
    assert np.allclose(back, action, atol=0.005 + 1e-9)
    assert encode_action(back) == encode_action(action)


@settings(max_examples=300)
@given(st.text())
def test_decode_never_raises_on_garbage(text):
    out = decode_action(text)
    assert out is None or (out.shape == (3,) and np.isfinite(out).all())


def test_frames_layout_puts_eight_labelled_images_in_the_prompt():
    """Each frame is one 56 px image (4 x 4 patches -> 4 tokens) after its label, in pad-major order, and
    the pixels of image k are frame k resized: nothing is tiled."""
    from tla.policies.tla.layout import separate_frames

    p = TLAProcessor(train_tiny_tokenizer(), image_size=56, layout="frames")
    x = obs(2)
    b = p.batch(x, ["square", "round"], ["[1, 2, 3]", "[4, 5, 6]"])
    assert b["image_grid_thw"].tolist() == [[1, 4, 4]] * 16
    assert (b["mm_token_type_ids"].sum(1) == 8 * 4).all()
    text = p.tokenizer.decode(b["input_ids"][0])
    labels = ["left t0:", "left t1:", "left t2:", "left t3:", "right t0:", "right t1:", "right t2:", "right t3:"]
    positions = [text.index(lab + "<|vision_start|>") for lab in labels]
    assert positions == sorted(positions)
    assert text.count("<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>") == 8
    lay = separate_frames(x[1], 56)
    assert len(lay.images) == 8 and lay.images[5].shape == (56, 56, 3)
    # image 5 of sample 1 is right t1 = frame 5: its patches are the ones the processor emitted in block 5
    one = p.visual([p.lay_out(x[1])])[0]["pixel_values"]
    five = p.visual([type(lay)([lay.images[5]], [{"type": "image"}])])[0]["pixel_values"]
    assert torch.equal(one[5 * 16 : 6 * 16], five)
    with pytest.raises(ValueError, match="unknown layout"):
        TLAProcessor(train_tiny_tokenizer(), image_size=56, layout="movie")
    with pytest.raises(ValueError, match="multiple of 28"):
        TLAProcessor(train_tiny_tokenizer(), image_size=50, layout="frames")
