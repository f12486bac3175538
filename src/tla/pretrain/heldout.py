"""The held-out check of a pretraining checkpoint, made to run in a fresh process on the exported folder.

    python -m tla.pretrain.heldout OUT/model --corpus-cache OUT/corpus --out OUT/heldout.json

The model and tokenizer are loaded by plain transformers (`Qwen2VLForConditionalGeneration`,
`AutoTokenizer`) from the folder alone; the project only builds the prompt and the pixels (the input
settings recorded in `tla_pretrain.json`) and scores the greedy answers against the held-out corpus.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def check(model_dir: str | Path, corpus_cache: str | Path | None = None, limit: int | None = None,
          batch_size: int = 16) -> dict:
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    from tla.config import from_dict
    from tla.policies.tla.config import TLAConfig
    from tla.policies.tla.processing import TLAProcessor
    from tla.pretrain.corpus import CorpusConfig, load_corpus
    from tla.pretrain.model import INFO_FILE, score

    model_dir = Path(model_dir)
    info = json.loads((model_dir / INFO_FILE).read_text())
    tla_cfg = from_dict(TLAConfig, info["tla"])
    corpus_keys = {k: v for k, v in info["corpus"].items() if k in CorpusConfig.__dataclass_fields__}
    corpus = load_corpus(from_dict(CorpusConfig, corpus_keys), "heldout", corpus_cache, progress=False)
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = TLAProcessor(tokenizer, tla_cfg.image_size, tla_cfg.preprocess, tla_cfg.layout)
    n = len(corpus) if limit is None else min(limit, len(corpus))
    items = [corpus[i] for i in range(n)]
    answers: list[str] = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            chunk = items[i : i + batch_size]
            batch = processor.batch([it["frames"] for it in chunk], [it["shape"] for it in chunk],
                                    questions=[it["question"] for it in chunk])
            prompt_len = batch["input_ids"].shape[1]
            out = model.generate(**batch, max_new_tokens=tla_cfg.generate.max_new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=processor.pad_id, eos_token_id=processor.end_id)
            answers += [t.strip() for t in tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)]
    result = score(items, answers)
    result["samples"] = n
    result["examples"] = [{"kind": it["kind"], "question": it["question"], "truth": it["answer"], "answer": a}
                          for it, a in list(zip(items, answers))[:: max(1, n // 14)]]
    result["distinct_answers"] = len(set(answers))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--corpus-cache", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    np.random.seed(0)
    result = check(args.model_dir, args.corpus_cache, args.limit)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
