"""Export a split to the chat `messages` + `images` JSONL used by TRL and LLaMA-Factory.

One line per sample; the composite is written as a PNG next to the JSONL and referenced by relative path:
    {"messages": [{"role": "user", "content": "<image>Given the tactile images ..."},
                  {"role": "assistant", "content": "[-90, 40, 13]"}],
     "images": ["images/sp_train/000000.png"], "action": [...], "error": [...], "shape": "square", ...}
style="llamafactory" (default) marks the image with an `<image>` token in the text (LLaMA-Factory's
sharegpt/`messages` format, see dataset_info.json); style="trl" uses content lists
[{"type": "image"}, {"type": "text", "text": ...}] as TRL's vision SFT examples do.
Image paths are relative to OUT: LLaMA-Factory joins them to its `media_dir` (default: `dataset_dir`).
The `trl` and `llamafactory` export formats build on this: see tla.data.chat; LeRobot: tla.data.lerobot.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from tla.data import store
from tla.data.dataset import TactileDataset


def sample_metadata(item: dict) -> dict:
    """What every chat export keeps of a sample beside the conversation: its labels and where it came from."""
    return {
        "action": item["action"].tolist(),
        "error": item["error"].tolist(),
        "shape": item["shape"],
        "clearance": item["clearance"],
        "episode_index": item["episode_index"],
        "attempt_index": item["attempt_index"],
    }


def _messages(instruction: str, answer: str, style: str) -> list[dict]:
    if style == "llamafactory":
        user = "<image>" + instruction
    elif style == "trl":
        user = [{"type": "image"}, {"type": "text", "text": instruction}]
        answer = [{"type": "text", "text": answer}]
    else:
        raise ValueError(f"unknown export style {style!r}; use 'llamafactory' or 'trl'")
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def export_messages(
    root: str | Path, out: str | Path, splits: list[str] | None = None, composite_size: int = 616,
    style: str = "llamafactory", limit: int | None = None,
) -> dict[str, Path]:
    """Write OUT/<split>.jsonl and OUT/images/<split>/NNNNNN.png; returns split -> jsonl path."""
    out = Path(out)
    written = {}
    for split in splits or list(store.load_info(root)["splits"]):
        ds = TactileDataset(root, split, composite_size=composite_size)
        img_dir = out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        path = out / f"{split}.jsonl"
        n = len(ds) if limit is None else min(limit, len(ds))
        with open(path, "w") as f:
            for i in range(n):
                item = ds[i]
                rel = f"images/{split}/{i:06d}.png"
                cv2.imwrite(str(out / rel), cv2.cvtColor(item["composite"], cv2.COLOR_RGB2BGR))
                row = {"messages": _messages(item["instruction"], item["answer"], style), "images": [rel],
                       **sample_metadata(item)}
                f.write(json.dumps(row) + "\n")
        written[split] = path
    if style == "llamafactory":
        info = {
            f"tla_{s}": {"file_name": p.name, "formatting": "sharegpt",
                         "columns": {"messages": "messages", "images": "images"},
                         "tags": {"role_tag": "role", "content_tag": "content",
                                  "user_tag": "user", "assistant_tag": "assistant"}}
            for s, p in written.items()
        }
        (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return written
