"""Fine-tune the tiny TLA policy with TRL's SFTTrainer on a `tla data export --format trl` folder.

    tla data export DATA --out trl_data --format trl --split sp_train --composite-size 224
    python examples/trl_sft.py trl_data --split sp_train --steps 20 --out runs/trl_tiny

The export is TRL's conversational prompt-completion format with an `images` column, so SFTTrainer picks
DataCollatorForVisionLanguageModeling and completion-only loss (the action text) by itself. It needs a
transformers `ProcessorMixin`; Qwen2-VL's own (`Qwen2VLProcessor`, what AutoProcessor builds) also requires
a video processor, which needs torchvision. `ImageTextProcessor` below is Qwen2VLProcessor without the video
half: the policy's torchvision-free image processor + tokenizer + chat template, nothing else changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def image_text_processor(image_processor, tokenizer):
    """A Qwen2VLProcessor with only `image_processor` and `tokenizer` (no video processor)."""
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageTextProcessor(Qwen2VLProcessor):
        # ProcessorMixin reads the sub-processors from this signature: no `video_processor` here
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = "<|image_pad|>"
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageTextProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder written by `tla data export --format trl`")
    ap.add_argument("--split", default="sp_train")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path("runs/trl_tiny"))
    args = ap.parse_args(argv)
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        print("trl is not installed: pip install 'tla[trl]'", file=sys.stderr)
        return 2
    import datasets
    import torch

    from tla.policies.tla.policy import TLAPolicy

    policy = TLAPolicy.build("tiny")  # random-init tiny Qwen2-VL + its tokenizer and image processor
    processor = image_text_processor(policy.processor.image_processor, policy.processor.tokenizer)
    train = datasets.load_dataset("parquet", data_files=str(args.data / "data" / f"{args.split}-*.parquet"),
                                  split="train", cache_dir=str(args.out / "hf_cache"))
    config = SFTConfig(
        output_dir=str(args.out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        max_length=None,  # never truncate: the image tokens must stay whole
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=policy.model, args=config, train_dataset=train, processing_class=processor)
    result = trainer.train()
    print(f"trained {result.global_step} steps, final loss {result.training_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
