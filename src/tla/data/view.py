"""Look at a dataset: a contact sheet of one sample, and per-split counts with label histograms."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tla.data import store
from tla.data.dataset import TactileDataset
from tla.data.text import decode_action

AXES = ("dx (mm)", "dy (mm)", "drz (deg)")


def sample_sheet(root: str | Path, split: str, index: int, out: str | Path, composite_size: int = 616,
                 modality: str = "rgb") -> Path:
    """PNG with the 8 frames, the 3x3 composite, and the sample's pose error, label, instruction, answer;
    frames in `modality` (rgb, or a stored field rendered as a policy sees it)."""
    ds = TactileDataset(root, split, composite_size=composite_size, modality=modality)
    item = ds[index]
    fig = plt.figure(figsize=(16, 7.5), constrained_layout=True)
    grid = fig.add_gridspec(3, 6, width_ratios=[1, 1, 1, 1, 2.2, 0.01])
    for i, frame in enumerate(item["frames"]):
        ax = fig.add_subplot(grid[i // 4, i % 4])
        ax.imshow(frame)
        ax.set_title(store.FRAME_COLUMNS[i], fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[0:2, 4])
    ax.imshow(item["composite"])
    ax.set_title(f"{modality} composite {composite_size}x{composite_size} (L0 L1 L2 / L3 R0 R1 / R2 R3 --)",
                 fontsize=9)
    ax.axis("off")
    e, a = item["error"], item["action"]
    decoded = decode_action(item["answer"], ds.scale)
    text = (
        f"{split}[{index}]  shape={item['shape']}  clearance={item['clearance']:.2f} mm  "
        f"episode {item['episode_index']} attempt {item['attempt_index']}  sample_seed {item['sample_seed']}\n"
        f"pose error (ex, ey, erz) = ({e[0]:+.3f} mm, {e[1]:+.3f} mm, {e[2]:+.3f} deg)\n"
        f"label (dx, dy, drz)      = ({a[0]:+.3f} mm, {a[1]:+.3f} mm, {a[2]:+.3f} deg)\n"
        f"instruction: {item['instruction']}\n"
        f"answer: {item['answer']}   (decoded {np.round(decoded, 3).tolist() if decoded is not None else 'FAILED'},"
        f" scale {list(ds.scale)})"
    )
    ax = fig.add_subplot(grid[2, :])
    ax.axis("off")
    ax.text(0.0, 0.5, text, family="monospace", fontsize=9, va="center", wrap=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def modality_sheet(root: str | Path, split: str, index: int, out: str | Path) -> Path:
    """PNG: one sample's 8 frames in every modality the dataset stores (one row each), with its pose error."""
    from tla.sim.modality import MODALITIES

    info = store.load_info(root)
    modalities = [m for m in MODALITIES if m == "rgb" or m in info.get("fields", {})]
    fig, axes = plt.subplots(len(modalities), 8, figsize=(16, 1.7 * len(modalities) + 0.6), squeeze=False)
    for row, m in zip(axes, modalities):
        item = TactileDataset(root, split, modality=m)[index]
        for i, (ax, frame) in enumerate(zip(row, item["frames"])):
            ax.imshow(frame)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(store.FRAME_COLUMNS[i], fontsize=8)
        row[0].set_ylabel(m, fontsize=10)
    e = item["error"]
    fig.suptitle(f"{split}[{index}] {item['shape']}, c = {item['clearance']:.1f} mm, pose error "
                 f"({e[0]:+.2f} mm, {e[1]:+.2f} mm, {e[2]:+.2f} deg): the modalities a policy can read", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def split_stats(root: str | Path) -> dict:
    """Counts per split and shape (from meta/info.json) and label/error summaries (meta/stats.json)."""
    import json

    info = store.load_info(root)
    stats = json.loads((Path(root) / "meta" / "stats.json").read_text())
    return {split: {**v, "stats": stats[split]} for split, v in info["splits"].items()}


def label_histograms(root: str | Path, out: str | Path) -> Path:
    """One row per split, one column per action axis (and one per error axis)."""
    info = store.load_info(root)
    splits = list(info["splits"])
    fig, axes = plt.subplots(len(splits), 6, figsize=(20, 2.6 * len(splits)), squeeze=False, constrained_layout=True)
    for row, split in enumerate(splits):
        s = store.read_scalars(Path(root), info["splits"][split]["files"])
        for j in range(3):
            axes[row, j].hist(s["action"][:, j], bins=41, color="tab:blue")
            axes[row, j].set_title(f"{split}: action {AXES[j]}", fontsize=9)
            axes[row, 3 + j].hist(s["error"][:, j], bins=41, color="tab:gray")
            axes[row, 3 + j].set_title(f"{split}: error {('ex (mm)', 'ey (mm)', 'erz (deg)')[j]}", fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out
