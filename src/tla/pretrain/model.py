"""The pretraining policy (the TLA's model answering the corpus's questions), its scoring, and the export
of the result as a standard Hugging Face checkpoint folder.

The model is the TLA's (`TLAPolicy`: the tiny Qwen2-VL, its processor and prompt); only the user turn's
text changes (a corpus question instead of the insertion instruction) and the target (the question's
answer instead of the action). Without the position table (a module Qwen2-VL does not have), so the
exported folder is a stock checkpoint that plain `transformers` loads and runs exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from tla.policies.collapse import COLLAPSE_SHARE
from tla.policies.tla.policy import TLAPolicy
from tla.policies.tla.processing import IGNORE
from tla.pretrain.corpus import KINDS

# The input a pretraining base reads and its fine-tuning runs must be fed: marker flow, the 8 frames as
# labelled 56 px images (see tla.pretrain.run for why not the composite)
BASE_INPUT = {"modality": "marker_flow", "layout": "frames", "frame_size": 56}
INFO_FILE = "tla_pretrain.json"  # in the checkpoint folder: how to feed the model (modality, layout, size)
_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?")
_MOVE = re.compile(r"\[[^\]]*\]")


class PretrainPolicy(TLAPolicy):
    name = "tla_pretrain"
    # "answer": every answer weighs the same in a batch (its tokens' mean loss, then the mean over answers);
    # "token": the mean over every answer token of the batch (the model's own loss), under which a 25-token
    # numeric answer outweighs a 3-token "the left pad" eightfold. Set by `PretrainConfig.loss`.
    loss_weighting = "answer"

    def loss(self, model, batch: dict):
        if self.loss_weighting == "token":
            return super().loss(model, batch)
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        targets = labels[:, 1:]
        per_token = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                                      ignore_index=IGNORE, reduction="none")
        counts = (targets != IGNORE).sum(1).clamp(min=1)
        return (per_token.sum(1) / counts).mean(), {}

    def answer(self, item: dict) -> str:
        return item["answer"]

    def collate(self, items: list[dict]) -> dict:
        return self.processor.batch([it["frames"] for it in items], [it["shape"] for it in items],
                                    [it["answer"] for it in items], [it["question"] for it in items])

    def answer_questions(self, observations, shapes: list[str], questions: list[str]) -> list[str]:
        """Beam search (the run's `generate.num_beams`) answers to one question per observation."""
        texts, _ = self.generate_batched(observations, shapes, self.cfg.generate.num_beams, 1, questions=questions)
        return [str(x).strip() for x in texts[:, 0]]

    def validation_metrics(self, items: list[dict]) -> dict:
        """The trainer's validation hook: accuracy of the answers, overall and per kind."""
        answers = self.answer_questions([it["frames"] for it in items], [it["shape"] for it in items],
                                        [it["question"] for it in items])
        scores = score(items, answers)
        # the trainer's collapse keys: it warns loudly when val_collapsed is true
        return {"val_accuracy": scores["accuracy"],
                **{f"val_accuracy_{k}": v["accuracy"] for k, v in scores["kinds"].items()},
                "val_distinct_answers": len(set(answers)), "val_modal_share": float(np.mean(
                    [v["modal_share_per_wording"] for v in scores["kinds"].values()])),
                "val_collapsed": scores["collapsed"]}


# --- scoring --------------------------------------------------------------------------------------------
def error_signs(text: str) -> np.ndarray | None:
    """The signs of the three numbers of an `error` answer ('x +1.4 mm, y -0.6 mm, rz +2.1 deg')."""
    nums = _NUM.findall(text)
    if len(nums) != 3:
        return None
    return np.sign(np.array([float(v) for v in nums]))


def correct(kind: str, truth: str, answer: str) -> float:
    """1.0 for a right answer; for `error` the share of the three axes whose sign is right (numbers whose
    exact value is rarely hit; the sign is what a correction needs)."""
    if kind == "error":
        t, a = error_signs(truth), error_signs(answer)
        return 0.0 if a is None else float(np.mean(t == a))
    return float(answer.strip() == truth.strip())


def chance(kind: str, truths: list[str]) -> float:
    """What a model that ignores the touch reaches: the most frequent answer of the set (for `error`, the
    best constant sign per axis)."""
    if not truths:
        return float("nan")
    if kind == "error":
        signs = np.stack([error_signs(t) for t in truths])
        return float(np.mean([max(np.mean(signs[:, i] > 0), np.mean(signs[:, i] <= 0)) for i in range(3)]))
    return modal_share(truths)


def modal_share(texts: list[str]) -> float:
    """The share of the most frequent text."""
    _, counts = np.unique(np.asarray(texts, dtype=object).astype(str), return_counts=True)
    return float(counts.max() / len(texts))


def question_template(question: str) -> str:
    """The question with its move masked: samples asked the same wording share a template."""
    return _MOVE.sub("[move]", question)


def score(items: list[dict], answers: list[str]) -> dict:
    """Accuracy per kind beside the chance level of the same samples, and overall (the mean over kinds).

    The collapse guard: a kind collapsed when, for each wording of its question, the model gives one answer
    to at least COLLAPSE_SHARE of the samples (averaged over wordings), while the right answers vary: its
    answer is a function of the question's text, not of the touch. `collapsed` when every kind that only
    the touch answers (all but `insert`, whose move is in the text) collapsed."""
    kinds = {}
    for kind in KINDS:
        idx = [i for i, it in enumerate(items) if it["kind"] == kind]
        if not idx:
            continue
        truths = [items[i]["answer"] for i in idx]
        given = [answers[i] for i in idx]
        acc = float(np.mean([correct(kind, items[i]["answer"], answers[i]) for i in idx]))
        groups: dict[str, list[str]] = {}
        for i in idx:
            groups.setdefault(question_template(items[i].get("question", "")), []).append(answers[i])
        share = float(sum(modal_share(g) * len(g) for g in groups.values()) / len(idx))
        kinds[kind] = {"accuracy": acc, "chance": chance(kind, truths), "n": len(idx),
                       "distinct_answers": len(set(given)), "modal_share_per_wording": share,
                       "collapsed": bool(share >= COLLAPSE_SHARE > modal_share(truths))}
    collapsed = [k for k, v in kinds.items() if v["collapsed"]]
    touch_only = [k for k in kinds if k != "insert"]
    return {"accuracy": float(np.mean([v["accuracy"] for v in kinds.values()])) if kinds else float("nan"),
            "chance": float(np.mean([v["chance"] for v in kinds.values()])) if kinds else float("nan"),
            "kinds": kinds, "collapsed_kinds": collapsed,
            "collapsed": bool(touch_only) and all(k in collapsed for k in touch_only)}


# --- export ---------------------------------------------------------------------------------------------
def export_checkpoint(policy: PretrainPolicy, out: str | Path, info: dict) -> Path:
    """A standard Hugging Face folder: config.json + model.safetensors + generation_config.json (the model),
    the tokenizer with its chat template, preprocessor_config.json (the image processor), `tla_pretrain.json`
    (`info`: the corpus, the input the model reads) and README.md (the model card)."""
    if policy.position_table is not None:
        raise ValueError("a pretraining checkpoint must be a stock Qwen2-VL: train it with "
                         "tla.model.position_table=false")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    policy.processor.image_processor.save_pretrained(out)
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return out


def input_settings(policy: PretrainPolicy) -> dict:
    """What a model reading this checkpoint must be fed (the fine-tuning run's TLA config must agree)."""
    cfg = policy.cfg
    return {"modality": cfg.modality, "layout": cfg.layout, "image_size": cfg.image_size,
            "composite_size": cfg.composite_size, "frame_size": cfg.frame_size,
            "max_new_tokens": cfg.generate.max_new_tokens, "num_beams": cfg.generate.num_beams}


def check_base(model_dir: str | Path) -> dict:
    """A `tla pretrain` model folder pretrained on BASE_INPUT (what the ablation's pretrained-base rows feed
    it); returns its input settings."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists() or not (model_dir / INFO_FILE).exists():
        raise FileNotFoundError(f"{model_dir} is not a `tla pretrain` model folder (config.json and {INFO_FILE} "
                                "expected); run `tla pretrain --out OUT` and pass OUT/model")
    got = json.loads((model_dir / INFO_FILE).read_text())["input"]
    bad = {k: (got.get(k), v) for k, v in BASE_INPUT.items() if got.get(k) != v}
    if bad:
        raise ValueError(f"{model_dir} was pretrained on another input than the fine-tuning rows feed it: "
                         + "; ".join(f"{k} {a!r} (needed {b!r})" for k, (a, b) in bad.items())
                         + "; pretrain it with the default tla.* input settings")
    return got
