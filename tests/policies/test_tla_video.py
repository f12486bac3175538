"""The `video` layout: hand-built Qwen2-VL video patches (no torchvision), the prompt's video tokens, and a
tiny TLA that trains, predicts and reloads on it."""

import numpy as np
import pytest
import torch
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tla.policies.tla import TLAPolicy
from tla.policies.tla.adapters.qwen2_vl import Qwen2VLAdapter, video_patches
from tla.policies.tla.layout import pad_videos
from tla.policies.tla.processing import TLAProcessor
from tla.policies.tla.tokenizer import train_tiny_tokenizer

torch.set_num_threads(1)
SIZE = 56  # 4 x 4 patches per frame, 2 x 2 merged tokens


def obs(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 30, 40, 3), dtype=np.uint8)


def frames(n, seed=0, size=SIZE):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_video_patches_are_the_image_patches_when_each_temporal_pair_repeats_a_frame():
    """The image path fills a temporal patch with one frame twice; a video whose pairs repeat a frame
    (a a b b) must give exactly those patches, slice by slice."""
    adapter, a_b = Qwen2VLAdapter(), frames(2)
    ip = adapter.image_processor(SIZE)
    video = adapter.encode_videos(ip, [np.stack([a_b[0], a_b[0], a_b[1], a_b[1]])])
    images = adapter.encode_images(ip, [a_b[0], a_b[1]])
    assert torch.equal(video.inputs["pixel_values_videos"], images.inputs["pixel_values"])
    assert video.inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert images.inputs["image_grid_thw"].tolist() == [[1, 4, 4]] * 2
    assert video.tokens == [2 * 4 * 4 // 4] and images.tokens == [4, 4]


def test_video_patches_follow_the_video_processors_order():
    """Raw pixels (no rescale / normalisation), two videos of 4 distinct frames: row r of the output is
    (temporal slice t, merge block (by, bx), patch (my, mx) in it) and holds channel-major, then frame
    2t+k, then the 14 x 14 pixels of that patch -- the order transformers' Qwen2-VL video processor emits
    (its patchify: grid_t, block row, block col, merge row, merge col, channel, frame, row, col)."""
    adapter, p, m = Qwen2VLAdapter(), 14, 2
    ip = Qwen2VLImageProcessorPil(min_pixels=SIZE**2, max_pixels=SIZE**2, do_rescale=False,
                                  do_normalize=False)
    videos = [frames(4, seed=1), frames(4, seed=2)]
    out = adapter.encode_videos(ip, videos).inputs["pixel_values_videos"].numpy()
    rows = []
    for v in videos:
        for t in range(2):
            for by in range(2):
                for bx in range(2):
                    for my in range(m):
                        for mx in range(m):
                            y, x = (by * m + my) * p, (bx * m + mx) * p
                            # (frame k, row, col, channel) -> (channel, k, row, col)
                            cube = np.stack([v[2 * t + k, y : y + p, x : x + p] for k in range(2)])
                            rows.append(cube.transpose(3, 0, 1, 2).reshape(-1))
    np.testing.assert_array_equal(out, np.array(rows, dtype=np.float32))
    with pytest.raises(ValueError, match="temporal patches"):
        video_patches(np.zeros((3 * 16, 3 * 2 * 14 * 14), np.float32), 3, 2)


@pytest.fixture(scope="module")
def proc():
    return TLAProcessor(train_tiny_tokenizer(), image_size=SIZE, layout="video")


def test_video_layout_prompt_has_grid_t_h_w_over_merge_squared_tokens_per_video(proc):
    x = obs(2)
    b = proc.batch(x, ["square", "round"], ["[1, 2, 3]", "[4, 5, 6]"])
    assert "pixel_values" not in b and "image_grid_thw" not in b
    grid = b["video_grid_thw"]
    assert grid.tolist() == [[2, 4, 4]] * 4  # 2 observations x (left, right)
    per_video = int(grid[0].prod()) // proc.merge**2
    assert per_video == 8 and b["pixel_values_videos"].shape == (4 * 2 * 16, 3 * 2 * 14 * 14)
    video_id = proc.placeholder_ids["video"]
    assert ((b["input_ids"] == video_id).sum(1) == 2 * per_video).all()
    # M-RoPE's modality ids: 2 on video tokens, nothing marked as image
    assert torch.equal(b["mm_token_type_ids"] == 2, b["input_ids"] == video_id)
    assert not (b["mm_token_type_ids"] == 1).any()
    text = proc.tokenizer.decode(b["input_ids"][0])
    video = "<|vision_start|>" + "<|video_pad|>" * per_video + "<|vision_end|>"
    assert text.count(video) == 2 and text.index("left pad:" + video) < text.index("right pad:" + video)
    lay = pad_videos(proc.frames(x[0]), SIZE)
    assert not lay.images and [v.shape for v in lay.videos] == [(4, SIZE, SIZE, 3)] * 2


def test_position_table_holds_one_grid_per_video_and_temporal_slice():
    p = TLAPolicy.build("tiny", ["layout=video", f"frame_size={SIZE}"])
    assert p.processor.position_grids == 2 * 2
    assert p.position_table.weight.shape[0] == 2 * 2 * 16


def train_steps(p, steps=2):
    rng = np.random.default_rng(0)
    items = [{"frames": rng.integers(0, 256, (8, 30, 40, 3), dtype=np.uint8), "shape": s,
              "action": rng.uniform(-1, 1, 3).astype(np.float32)} for s in ("square", "round", "square")]
    opt = torch.optim.AdamW([q for q in p.model.parameters() if q.requires_grad], lr=1e-3)
    losses = []
    for _ in range(steps):
        loss, _ = p.loss(p.model, p.collate(items))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_tiny_video_tla_trains_predicts_and_round_trips(tmp_path):
    from tla.policies.base import make_batch

    p = TLAPolicy.build("tiny", ["layout=video", f"frame_size={SIZE}", "generate.max_new_tokens=6"])
    table_before = p.position_table.weight.detach().clone()
    losses = train_steps(p)
    assert np.isfinite(losses).all()
    assert not torch.equal(table_before, p.position_table.weight)  # the table is reached by the video path
    x, shapes = obs(3, seed=4), ["square", "round", "square"]
    pred = p.predict(make_batch(x, shapes))
    assert pred.actions.shape == (3, 3) and np.isfinite(pred.actions).all() and len(pred.texts) == 3
    p.save(tmp_path)
    q = TLAPolicy.load(tmp_path)
    assert q.cfg.layout == "video" and torch.equal(p.position_table.weight, q.position_table.weight)
    again = q.predict(make_batch(x, shapes))
    assert again.texts == pred.texts and np.array_equal(again.actions, pred.actions)


def test_pairs_layout_interleaves_the_pads_so_each_temporal_patch_holds_one_instant():
    """`pairs`: one 8-frame video left t0, right t0, ..., right t3; temporal patch k holds (left tk, right tk)
    at the same pixels, and the table holds one grid per instant."""
    from tla.policies.tla.layout import PAIRS_LABEL, pad_pairs
    from tla.sim.compose import frame_index

    x = np.stack([np.full((30, 40, 3), 10 * k, np.uint8) for k in range(8)])  # frame k is uniformly 10 k
    lay = pad_pairs(x, SIZE)
    assert not lay.images and len(lay.videos) == 1 and lay.videos[0].shape == (8, SIZE, SIZE, 3)
    order = [frame_index(pad, t) for t in range(4) for pad in range(2)]
    assert [int(f[0, 0, 0]) for f in lay.videos[0]] == [10 * k for k in order]
    assert order[:2] == [0, 4]  # left t0, right t0
    # at the layout's own size nothing is resampled: left frames as they are, right frames mirrored left-right
    y = frames(8, seed=5)
    video = pad_pairs(y, SIZE).videos[0]
    for k, idx in enumerate(order):
        np.testing.assert_array_equal(video[k], y[idx] if idx < 4 else y[idx][:, ::-1])
    p = TLAProcessor(train_tiny_tokenizer(), image_size=SIZE, layout="pairs")
    b = p.batch(obs(2), ["square", "round"], ["[1, 2, 3]", "[4, 5, 6]"])
    assert b["video_grid_thw"].tolist() == [[4, 4, 4]] * 2 and p.position_grids == 4
    assert ((b["input_ids"] == p.placeholder_ids["video"]).sum(1) == 4 * 16 // 4).all()
    assert PAIRS_LABEL in p.tokenizer.decode(b["input_ids"][0])
    q = TLAPolicy.build("tiny", ["layout=pairs", f"frame_size={SIZE}"])
    assert q.position_table.weight.shape[0] == 4 * 16
