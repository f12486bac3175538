"""Chat exports for fine-tuning tools: TRL (prompt-completion parquet with embedded images) and
LLaMA-Factory (sharegpt JSONL + dataset_info.json + a training YAML). Both work from any directory.

TRL (`export_trl`), checked against trl/trainer/sft_trainer.py and trl/data_utils.py:
    OUT/data/<split>-00000.parquet  rows {"prompt": [{"role": "user", "content": instruction}],
                                          "completion": [{"role": "assistant", "content": "[-90, 40, 13]"}],
                                          "images": [composite PNG (datasets.Image, bytes embedded)], ...}
    OUT/README.md                   dataset card whose `configs` name the splits: load_dataset(OUT, split=...)
  SFTTrainer sees "prompt" + "completion" -> completion_only_loss (the loss is on the answer only);
  "images" -> DataCollatorForVisionLanguageModeling, whose prepare_multimodal_messages puts one
  {"type": "image"} block before the first user text for each image.

LLaMA-Factory (`export_llamafactory`), checked against data/README.md, src/llamafactory/data/converter.py
(_find_medias) and hparams/data_args.py (media_dir defaults to dataset_dir):
    OUT/<split>.jsonl, OUT/images/<split>/NNNNNN.png, OUT/dataset_info.json   (tla.data.export)
    OUT/train_<split>.yaml                                                   the paper's LoRA recipe
  Image paths are relative to OUT; LLaMA-Factory joins them to `media_dir`, which the YAML sets to the
  absolute OUT (with `dataset_dir`), so `llamafactory-cli train OUT/train_sp_train.yaml` runs from any cwd.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tla.data import store
from tla.data.dataset import TactileDataset
from tla.data.export import export_messages, sample_metadata

ROWS_PER_GROUP = 64  # parquet row group: ~64 composites, a few MB, streamed by datasets


# ---------------------------------------------------------------- TRL
def trl_features():
    """Schema of the TRL export (conversational prompt-completion + images + the sample's labels)."""
    import datasets

    message = {"role": datasets.Value("string"), "content": datasets.Value("string")}
    return datasets.Features({
        "prompt": datasets.List(message),
        "completion": datasets.List(message),
        "images": datasets.List(datasets.Image()),
        "action": datasets.List(datasets.Value("float32"), length=3),
        "error": datasets.List(datasets.Value("float32"), length=3),
        "shape": datasets.Value("string"),
        "clearance": datasets.Value("float32"),
        "episode_index": datasets.Value("int64"),
        "attempt_index": datasets.Value("int64"),
    })


def trl_row(item: dict) -> dict:
    """One TactileDataset item (with `composite`) -> one TRL row; the composite is embedded as PNG."""
    return {
        "prompt": [{"role": "user", "content": item["instruction"]}],
        "completion": [{"role": "assistant", "content": item["answer"]}],
        "images": [{"bytes": store.encode_image(item["composite"], "png"), "path": None}],
        **sample_metadata(item),
    }


def export_trl(root: str | Path, out: str | Path, splits: list[str] | None = None, composite_size: int = 616,
               limit: int | None = None) -> dict[str, Path]:
    """Write OUT/data/<split>-00000.parquet per split and the card; returns split -> parquet path.
    Load with `datasets.load_dataset(str(OUT), split=SPLIT)` (or "parquet" with data_files=PATH)."""
    out = Path(out)
    schema = trl_features().arrow_schema
    written = {}
    for split in splits or list(store.load_info(root)["splits"]):
        ds = TactileDataset(root, split, composite_size=composite_size)
        path = out / "data" / f"{split}-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(ds) if limit is None else min(limit, len(ds))
        with pq.ParquetWriter(path, schema) as writer:
            for start in range(0, n, ROWS_PER_GROUP):
                rows = [trl_row(ds[i]) for i in range(start, min(n, start + ROWS_PER_GROUP))]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        written[split] = path
    _card(out, {s: f"data/{s}-*.parquet" for s in written}, "TRL", [
        ("Conversational prompt-completion rows for TRL's `SFTTrainer` (the loss is on the completion, the "
         "action text): `prompt` (user turn: the instruction), `completion` (assistant turn: the action as "
         "`[dx, dy, drz]` in 1/100 mm, 1/100 mm, 1/100 deg), `images` (the 8 tactile frames tiled into one "
         f"{composite_size} px composite, PNG), plus the labels `action`, `error`, `shape`, `clearance`."), "",
        "```python", "from datasets import load_dataset",
        f'ds = load_dataset("{out.resolve()}", split="{next(iter(written), "sp_train")}")', "```"])
    return written


# ---------------------------------------------------------------- LLaMA-Factory
LLAMAFACTORY_YAML = """\
# LLaMA-Factory LoRA SFT of Qwen2-VL-7B-Instruct on TLA split {split} (the paper's recipe).
# Run from any directory: llamafactory-cli train {yaml_path}
### model
model_name_or_path: Qwen/Qwen2-VL-7B-Instruct
image_max_pixels: {max_pixels}  # {size} x {size}: the composite is fed at full size, never shrunk
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_target: all  # LoRA on every linear layer of the language model
lora_rank: 16
lora_alpha: 32
lora_dropout: 0.05
freeze_vision_tower: true
freeze_multi_modal_projector: true

### dataset
dataset_dir: {dataset_dir}  # absolute: dataset_info.json is found from any cwd
media_dir: {dataset_dir}  # image paths in the JSONL are relative to it
dataset: tla_{split}
template: qwen2_vl
cutoff_len: 1024  # ~{image_tokens} image tokens + ~60 text tokens
preprocessing_num_workers: 8
dataloader_num_workers: 4

### output
output_dir: saves/tla/qwen2_vl-7b/lora/{split}
logging_steps: 10
save_steps: 1000
plot_loss: true
overwrite_output_dir: true
report_to: none

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 8  # global batch 16
learning_rate: 1.0e-4
num_train_epochs: {epochs}  # the paper: 20 single-peg; 10 multi-peg (twice the samples)
lr_scheduler_type: cosine
warmup_ratio: 0.03
weight_decay: 0.0
bf16: true
ddp_timeout: 180000000
"""


def llamafactory_yaml(out: Path, split: str, composite_size: int) -> Path:
    """OUT/train_<split>.yaml: LoRA SFT of Qwen2-VL-7B-Instruct with absolute dataset/media dirs."""
    path = out / f"train_{split}.yaml"
    tokens = (composite_size // 28) ** 2  # 14 px patches merged 2 x 2
    path.write_text(LLAMAFACTORY_YAML.format(
        split=split, yaml_path=path.resolve(), max_pixels=composite_size**2, size=composite_size,
        dataset_dir=out.resolve(), image_tokens=tokens, epochs="10.0" if split.startswith("mp") else "20.0"))
    return path


def export_llamafactory(root: str | Path, out: str | Path, splits: list[str] | None = None,
                        composite_size: int = 616, limit: int | None = None) -> dict[str, Path]:
    """The sharegpt JSONL export + dataset_info.json, a training YAML per training split (all splits when
    none is a training split) and the card; returns split -> jsonl path."""
    out = Path(out)
    written = export_messages(root, out, splits, composite_size, "llamafactory", limit)
    train = [s for s in written if s.endswith("train")] or list(written)
    for split in train:
        llamafactory_yaml(out, split, composite_size)
    _card(out, {s: p.name for s, p in written.items()}, "LLaMA-Factory", [
        "ShareGPT-style `messages` (`<image>` + instruction, then the action text) with `images` paths relative "
        "to this folder; `dataset_info.json` names each split `tla_<split>`. Train with "
        + ", ".join(f"`llamafactory-cli train {out.resolve() / f'train_{s}.yaml'}`" for s in train) + "."])
    return written


def _card(out: Path, data_files: dict[str, str], tool: str, body: list[str]) -> None:
    lines = store.card_header(data_files)
    lines += [f"# TLA tactile peg-in-hole ({tool} export)", "", *body, "",
              ("Exported by `tla data export`; each sample is one failed insertion attempt of the simulator's "
               "random insertion policy."), ""]
    (out / "README.md").write_text("\n".join(lines))

