"""What the tiny TLA sees: marker removal, mean removal, the vision position table (in Qwen2-VL's merge
order), their save/load round-trip, and the collapse guard."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tla.policies.collapse import check_collapse
from tla.policies.preprocess import FramePreprocess, preprocess_frames, remove_markers, stretch_contrast
from tla.policies.tla import TLAPolicy
from tla.policies.tla.position import PatchPositionTable, merge_order

torch.set_num_threads(1)


def contact_frames(markers: bool, light: float = 0.0) -> np.ndarray:
    """8 frames (48 x 64): grey background + a broad bright blob (the contact) + dark 2x2 markers every 4 px."""
    yy, xx = np.mgrid[:48, :64]
    blob = 40 * np.exp(-((yy - 24) ** 2 + (xx - 20) ** 2) / (2 * 12.0**2))
    f = np.repeat((150 + light + blob)[None, :, :, None], 3, axis=3).repeat(8, axis=0)
    if markers:
        dots = (yy % 4 < 2) & (xx % 4 < 2)
        f[:, dots] -= 100
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def test_demarker_erases_markers_and_keeps_the_contact():
    clean, marked = contact_frames(False), contact_frames(True)
    out = remove_markers(marked, 4)
    inner = (slice(None), slice(8, 40), slice(8, 56))  # borders see the bilinear edge
    # a marker covers a quarter of each 4x4 block: it becomes an even 25-level dip, no pattern left
    residual = out[inner].astype(float) - clean[inner]
    assert np.abs(marked[inner].astype(float) - clean[inner]).max() == 100
    assert abs(residual.mean() + 25) < 1.5 and residual.std() < 1.5
    # the contact blob (40 grey levels) survives: its peak is still ~40 above the far corner
    assert out[0, 24, 20, 0] - out[0, 24, 60, 0] > 30


def test_contrast_removes_the_mean_and_stretches():
    a, b = contact_frames(False), contact_frames(False, light=-20)  # same contact, another light level
    sa, sb = stretch_contrast(a, 3.0), stretch_contrast(b, 3.0)
    assert np.array_equal(sa, sb)  # a brightness offset does not reach the model
    assert abs(sa.astype(float).mean() - 128) < 1.5
    # differences are stretched 3x: the blob's 40-level rise becomes ~120 (clipped at 255)
    assert int(sa[0, 24, 20, 0]) - int(sa[0, 24, 60, 0]) > 110


def test_preprocess_defaults_are_identity_and_shapes_are_checked():
    f = contact_frames(True)
    assert np.array_equal(preprocess_frames(f, FramePreprocess()), f)
    out = preprocess_frames(f, FramePreprocess(demarker=True, contrast=True))
    assert out.shape == f.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match=r"\(8, H, W, 3\)"):
        preprocess_frames(f[:7], FramePreprocess(contrast=True))
    with pytest.raises(ValueError, match="contrast_gain"):
        TLAPolicy.build("tiny", ["preprocess.contrast_gain=0"])


def test_merge_order_is_the_image_processors_patch_order():
    """Paint each 14 px patch with its (row, col); the processor's emitted patches follow merge_order."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    h, w = 56, 84  # 4 x 6 patches, 2 x 3 merge windows
    img = np.zeros((h, w, 3), np.uint8)
    for r in range(h // 14):
        for c in range(w // 14):
            img[r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14, :2] = (10 * r, 10 * c)
    ip = Qwen2VLImageProcessorPil(min_pixels=h * w, max_pixels=h * w)
    out = ip(images=[img], return_tensors="pt", do_normalize=False, do_rescale=False)
    first_pixel = out["pixel_values"].view(-1, 3, 2, 14, 14)[:, :2, 0, 0, 0] / 10
    emitted = (first_pixel[:, 0] * 6 + first_pixel[:, 1]).round().long()
    assert emitted.tolist() == merge_order(4, 6, 2).tolist()
    assert merge_order(4, 6, 2)[:8].tolist() == [0, 1, 6, 7, 2, 3, 8, 9]


def test_position_table_adds_its_grid_cell_to_each_patch():
    t = PatchPositionTable(4, 6, dim=3)
    with torch.no_grad():
        t.weight.copy_(torch.arange(24.0)[:, None].repeat(1, 3))  # row-major index as the vector
    out = t(torch.zeros(2 * 24, 3))  # two images
    expected = merge_order(4, 6).float()
    assert torch.equal(out[:24, 0], expected) and torch.equal(out[24:, 0], expected)
    with pytest.raises(ValueError, match="whole observations"):
        t(torch.zeros(25, 3))


def test_position_table_with_several_images_gives_each_image_its_own_grid():
    """The frames layout: 8 images per observation, each with its own table rows, in prompt order."""
    t = PatchPositionTable(2, 2, dim=1, images=3)
    with torch.no_grad():
        t.weight.copy_(torch.arange(12.0)[:, None])
    out = t(torch.zeros(2 * 12, 1))[:, 0]  # two observations of 3 images of 2 x 2 patches
    assert out[:12].tolist() == list(range(12)) and torch.equal(out[12:], out[:12])
    with pytest.raises(ValueError, match="3 image"):
        t(torch.zeros(4, 1))


def obs(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 30, 40, 3), dtype=np.uint8)


def test_tiny_preset_reads_marker_flow_with_the_table_and_the_paper_recipe_does_not():
    from tla.policies.tla.config import tla_preset

    tiny = TLAPolicy.build("tiny", ["composite_size=112"])
    assert tiny.modality == "marker_flow" and tiny.cfg.preprocess.identity and tiny.position_table is not None
    paper = tla_preset("paper", ["model.path=/nowhere"])
    assert paper.modality == "rgb" and not paper.model.position_table and paper.preprocess.identity
    with pytest.raises(ValueError, match="unknown tactile modality"):
        tla_preset("tiny", ["modality=tactile"])
    # the table reaches the vision tower's output
    b = tiny.processor.batch(obs(1), ["square"])
    visual = tiny.model.model.visual
    with torch.no_grad():
        before = visual(b["pixel_values"], grid_thw=b["image_grid_thw"]).pooler_output.clone()
        tiny.position_table.weight.add_(1.0)
        after = visual(b["pixel_values"], grid_thw=b["image_grid_thw"]).pooler_output
    assert not torch.allclose(before, after)
    assert tiny.model.model.visual.position_table.weight.requires_grad


def test_table_and_preprocessing_round_trip_through_save_and_load(tmp_path):
    from transformers import AutoModelForImageTextToText

    p = TLAPolicy.build("tiny", ["composite_size=112", "generate.max_new_tokens=6", "preprocess.contrast=true",
                                 "preprocess.contrast_gain=2.5", "modality=depth"])
    with torch.no_grad():
        p.position_table.weight.normal_(0, 1.0)  # as if trained: far from the init
    p.save(tmp_path)
    q = TLAPolicy.load(tmp_path)
    assert torch.equal(p.position_table.weight, q.position_table.weight)
    assert q.cfg.preprocess == p.cfg.preprocess and q.cfg.preprocess.contrast_gain == 2.5
    assert q.modality == "depth"
    x = obs(3)
    batch = {"observation": x, "shape": ["square"] * 3}
    assert p.predict(batch).texts == q.predict(batch).texts
    # the model folder stays a stock Qwen2-VL checkpoint; the table lives beside it
    with safe_open(str(tmp_path / "model" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "position_table" in k]
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "model") is not None
    assert json.loads((tmp_path / "policy.json").read_text())["position_table"] is True
    (tmp_path / "position_table.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="position_table"):
        TLAPolicy.load(tmp_path)


def test_collapse_guard_on_constant_and_varied_answers():
    const = np.tile([0.5, -0.25, 1.0], (40, 1)) + np.random.default_rng(0).normal(0, 1e-4, (40, 3))
    c = check_collapse(const)
    assert c.collapsed and c.distinct_answers == 1 and c.modal_share == 1.0 and c.modal_answer == (0.5, -0.25, 1.0)
    assert "COLLAPSED" in c.message("model")
    nearly = const.copy()
    nearly[:3] = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]  # 37 of 40 alike = 92.5% >= 90%: still collapsed
    assert check_collapse(nearly).collapsed
    varied = np.random.default_rng(1).uniform(-1, 1, (40, 3))
    v = check_collapse(varied)
    assert not v.collapsed and v.distinct_answers == 40
    assert not check_collapse(const[:4]).collapsed  # too few samples to call it


def test_patch_embedding_as_matrix_product_equals_the_conv3d():
    p = TLAPolicy.build("tiny", ["model.position_table=false"])
    embed = p.model.model.visual.patch_embed
    x = torch.randn(64, 3 * 2 * 14 * 14)
    conv = embed.proj(x.view(-1, 3, 2, 14, 14)).view(-1, embed.embed_dim)
    assert torch.allclose(embed(x), conv, atol=1e-5)
