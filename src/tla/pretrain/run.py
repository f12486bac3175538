"""`tla pretrain`: train the tiny Qwen2-VL on the tactile-language corpus and export it as a checkpoint.

Stages (a rerun into the same folder resumes; another configuration there is refused):
1. the corpus (`corpus/`, cached per config): training and held-out attempts of the pretraining shapes;
2. training with the shared trainer (`run/`: checkpoints, train_log.jsonl, training curves; resumable):
   next-token loss on the answers, every weight trained (the backbone starts from random);
3. export (`model/`): a stock Hugging Face Qwen2-VL folder with tokenizer, image processor, model card;
4. the held-out check, in a fresh process that loads `model/` with plain transformers (`heldout.json`,
   `heldout.png`): the accuracy of each question kind beside the chance level of the same samples.

The folder `model/` is what `model.path` takes for the paper's fine-tuning recipe on this base
(`model.preset=pretrained model.path=OUT/model`; the TLA's input settings must match `tla_pretrain.json`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tla.config import apply_overrides, from_dict, to_dict
from tla.policies.tla.config import TLAConfig, tla_preset
from tla.policies.tla.layout import PAIRS_LABEL, frame_label
from tla.pretrain.corpus import EVALUATION_CLEARANCES, CorpusConfig, corpus_texts, describe, load_corpus
from tla.pretrain.model import BASE_INPUT, PretrainPolicy, export_checkpoint, input_settings
from tla.sim.compose import NUM_PADS, NUM_STEPS, PAD_NAMES
from tla.sim.geometry import SHAPES
from tla.train.config import TrainConfig, train_preset

CONFIG_FILE = "pretrain.json"


def _tla_default() -> TLAConfig:
    # marker flow in the `frames` layout (8 images of 56 px, each after its label "left t0:" ...), no position
    # table, greedy answers. Why frames: a stock Qwen2-VL has no absolute position in any token's content
    # (rotary positions only shape attention), so in the one-image composite it cannot tell the left pad's
    # cells from the right pad's; the tiny TLA gets that from its position table, which a stock checkpoint
    # cannot hold. The labels say it in words. Measured on this corpus, "which pad presses harder" only,
    # 1000 steps: composite 49.7% held-out (chance 49.7%, one answer), frames 96.7%.
    return tla_preset("tiny", [f"{k}={v}" for k, v in BASE_INPUT.items()] + [
        "model.position_table=false", "generate.decode=top", "generate.num_beams=1",
        "generate.max_new_tokens=48", "model.tiny.vocab_size=768"])


@dataclass
class PretrainConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    train: TrainConfig = field(default_factory=lambda: train_preset(
        "tiny", ["max_steps=2400", "batch_size=16", "val_every=500", "save_every=500", "val_max_samples=70",
                 "best_metric=val_loss"]))
    tla: TLAConfig = field(default_factory=_tla_default)
    # how the answers of a batch are weighed in the loss: "answer" (each answer the same) or "token" (each
    # answer token the same: long numeric answers dominate; which of the two learns better is unmeasured:
    # without the warm-up neither did, and the warm-up runs used "answer"); see PretrainPolicy.loss_weighting
    loss: str = "answer"
    # A warm-up stage on the easiest question kind before the whole corpus (`OUT/warmup/`, the same trainer
    # settings but max_steps). Without it the model answers every kind from the question's wording alone
    # and does not leave that plateau (1500 steps on all 7 kinds, or 1000 on rim + pad + twist, with 2 or 4
    # language layers: one answer per kind, at chance); trained on "which pad presses harder" alone it reads
    # the touch within 250 steps (held-out 96.7%), and from there the other kinds follow (rim + pad + twist after 400 pad steps: rim
    # 38% and pad 96% on validation by step 600, chance 16 / 49%). 0 turns the stage off.
    warmup_kinds: tuple[str, ...] = ("pad",)
    warmup_steps: int = 400


PRESETS = {
    # 2 CPU cores, ~30 min: the corpus (10000 + 300 attempts), 400 warm-up steps and 2400 steps of batch 16
    # (38k question-answer pairs, ~0.55 epochs of the 70k)
    "tiny": [],
    # for tests: seconds
    "smoke": ["warmup_steps=2", "corpus.attempts=6", "corpus.heldout_attempts=2", "train.max_steps=4", "train.batch_size=4",
              "train.val_every=2", "train.save_every=2", "train.val_max_samples=7", "train.num_workers=0",
              "train.report_to=none", "tla.generate.max_new_tokens=8",
              "tla.model.tiny.vocab_size=512"],
}


def pretrain_config(preset: str = "tiny", overrides: list[str] | None = None) -> PretrainConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown pretrain preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = apply_overrides(PretrainConfig(), [*PRESETS[preset], *(overrides or [])])
    cfg.corpus.validate()
    if cfg.loss not in ("answer", "token"):
        raise ValueError(f"loss must be 'answer' or 'token', got {cfg.loss!r}")
    if cfg.warmup_steps < 0 or (cfg.warmup_steps and not set(cfg.warmup_kinds) <= set(cfg.corpus.kinds)):
        raise ValueError(f"warmup_steps must be >= 0 and warmup_kinds ({', '.join(cfg.warmup_kinds)}) question "
                         f"kinds of the corpus ({', '.join(cfg.corpus.kinds)})")
    if cfg.tla.model.position_table:
        raise ValueError("tla.model.position_table=true is not a stock Qwen2-VL module: the checkpoint would not "
                         "load in plain transformers; leave it off here (a fine-tuning run may add it)")
    if cfg.tla.model.preset != "tiny" or cfg.tla.model.train_mode != "full":
        raise ValueError("pretraining trains the tiny backbone from scratch: tla.model.preset=tiny, "
                         "tla.model.train_mode=full")
    if cfg.tla.modality != cfg.corpus.modality:
        raise ValueError(f"tla.modality={cfg.tla.modality!r} but the corpus renders {cfg.corpus.modality!r}; "
                         "set both to the same modality")
    return cfg


def claim(out: Path, cfg: PretrainConfig, overwrite: bool) -> bool:
    """Record the config in `out` (True: a fresh start), or check that an earlier run there had the same
    one (False: resume). A different config is refused with the keys that differ, unless `overwrite`."""
    path = out / CONFIG_FILE
    mine = to_dict(cfg)
    if path.exists() and not overwrite:
        theirs = json.loads(path.read_text())["config"]
        diff = _differences(theirs, mine)
        if diff:
            raise ValueError(f"{out} holds a pretraining run with another configuration ({'; '.join(diff[:6])}); "
                             "rerun with the same settings to resume, pass --overwrite to replace it, or "
                             "choose another --out")
        return False
    if overwrite and out.exists():
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no pretraining run ({CONFIG_FILE} is missing); "
                         "choose another --out, or pass --overwrite to empty it")
    out.mkdir(parents=True, exist_ok=True)
    from tla.runinfo import write_atomic

    write_atomic(path, json.dumps({"config": mine}, indent=2, sort_keys=True, default=str))
    return True


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    a = list(a) if isinstance(a, tuple) else a
    b = list(b) if isinstance(b, tuple) else b
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def new_policy(cfg: PretrainConfig) -> PretrainPolicy:
    from tla.policies.tla.adapters import adapter_for
    from tla.policies.tla.tokenizer import train_tiny_tokenizer

    tok = train_tiny_tokenizer(cfg.tla.model.tiny.vocab_size, adapter_for(cfg.tla.model),
                               extra_texts=tuple(corpus_texts(cfg.corpus)))
    policy = PretrainPolicy(cfg.tla, tokenizer=tok)
    policy.loss_weighting = cfg.loss
    return policy


def pretrain(cfg: PretrainConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
             stop_after: int | None = None) -> dict:
    """Run (or resume) every stage; returns the held-out check (None when `stop_after` ended training)."""
    from tla.runinfo import run_metadata, write_atomic
    from tla.train.trainer import train

    out = Path(out)
    claim(out, cfg, overwrite)
    write_atomic(out / "run.json", json.dumps(run_metadata(to_dict(cfg), cfg.train.seed), indent=2, default=str))
    times: dict[str, float] = {}
    t = time.time()
    train_set = load_corpus(cfg.corpus, "train", out / "corpus", progress)
    load_corpus(cfg.corpus, "heldout", out / "corpus", progress)  # cached for the check's fresh process
    times["corpus_s"] = time.time() - t

    run_dir = out / "run"
    t = time.time()
    if (run_dir / "policy" / "policy.json").exists():
        policy = PretrainPolicy.load(run_dir / "policy")
    else:
        policy = warm_up(cfg, out, progress, stop_after)
        if policy is None:
            return {"finished": False, "stage": "warmup"}
        result = train(policy, train_set, cfg.train, run_dir, {"pretrain": to_dict(cfg)},
                       resume=(run_dir / "checkpoints").exists(), stop_after=stop_after)
        if not result["finished"]:
            return {"finished": False, "step": result["step"]}
    times["train_s"] = time.time() - t

    info = {"input": input_settings(policy), "tla": to_dict(cfg.tla), "corpus": describe(cfg.corpus),
            "train": to_dict(cfg.train), "train_samples": len(train_set)}
    model_dir = export_checkpoint(policy, out / "model", info)
    t = time.time()
    check = heldout_in_fresh_process(model_dir, out / "corpus", out / "heldout.json")
    times["heldout_check_s"] = time.time() - t
    write_model_card(model_dir, cfg, check, len(train_set))
    plot_heldout(check, out / "heldout.png")
    timing_path = out / "timing.json"
    previous = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    # the first completed invocation's times stay: a rerun that only reloads must not overwrite them
    write_atomic(timing_path, json.dumps({**{k: round(v, 1) for k, v in times.items()}, **previous}, indent=2))
    return check


def warm_up(cfg: PretrainConfig, out: Path, progress: bool, stop_after: int | None) -> PretrainPolicy | None:
    """The new model after the warm-up stage (`out/warmup/`: cfg.warmup_steps steps on the warm-up kinds
    only; resumable like the main stage), or None when `stop_after` ended it."""
    from dataclasses import replace

    from tla.train.trainer import train

    warm_dir = out / "warmup"
    if cfg.warmup_steps and (warm_dir / "policy" / "policy.json").exists():
        policy = PretrainPolicy.load(warm_dir / "policy")
        policy.loss_weighting = cfg.loss
        return policy
    policy = new_policy(cfg)
    if not cfg.warmup_steps:
        return policy
    warm_set = load_corpus(replace(cfg.corpus, kinds=tuple(cfg.warmup_kinds)), "train", out / "corpus", progress)
    warm_cfg = replace(cfg.train, max_steps=cfg.warmup_steps,
                       val_every=min(cfg.train.val_every, max(1, cfg.warmup_steps // 2)))
    result = train(policy, warm_set, warm_cfg, warm_dir, {"pretrain": to_dict(cfg), "stage": "warmup"},
                   resume=(warm_dir / "checkpoints").exists(), stop_after=stop_after)
    return policy if result["finished"] else None


def heldout_in_fresh_process(model_dir: Path, corpus_dir: Path, result: Path) -> dict:
    """`python -m tla.pretrain.heldout`: the exported folder loaded by plain transformers in a new process."""
    cmd = [sys.executable, "-m", "tla.pretrain.heldout", str(model_dir), "--corpus-cache", str(corpus_dir),
           "--out", str(result)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the held-out check failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(result.read_text())


# --- model card and picture -----------------------------------------------------------------------------
def accuracy_table(check: dict) -> str:
    rows = ["| question kind | held-out accuracy % | chance % (most frequent answer) | samples |", "|---|---|---|---|"]
    for kind, v in check["kinds"].items():
        rows.append(f"| {kind} | {100 * v['accuracy']:.1f} | {100 * v['chance']:.1f} | {v['n']} |")
    rows.append(f"| **mean over kinds** | **{100 * check['accuracy']:.1f}** | {100 * check['chance']:.1f} | |")
    if check.get("collapsed_kinds"):
        rows.append(f"\n**Collapsed** on {', '.join(check['collapsed_kinds'])}: one answer per wording of the "
                    "question for at least 90% of its samples while the right answers vary (the model does not "
                    "read the touch there).")
    return "\n".join(rows)


def warmup_words(cfg: PretrainConfig) -> str:
    if not cfg.warmup_steps:
        return ""
    return (f"a warm-up of {cfg.warmup_steps} steps on the {', '.join(cfg.warmup_kinds)} questions alone (from "
            "scratch on every kind at once the model answers from the wording alone and stays there), ")


def layout_words(tla_cfg: TLAConfig) -> str:
    first, last = frame_label(0, 0), frame_label(NUM_PADS - 1, NUM_STEPS - 1)
    if tla_cfg.layout == "frames":
        return f"as 8 images of {tla_cfg.frame_size} px, each after its label ({first} ... {last})"
    if tla_cfg.layout == "video":
        return (f"as two 4-frame videos of {tla_cfg.frame_size} px, each after its label "
                f"({' / '.join(f'{pad} pad:' for pad in PAD_NAMES)})")
    if tla_cfg.layout == "pairs":
        return f"as one 8-frame video of {tla_cfg.frame_size} px, the pads interleaved ({PAIRS_LABEL})"
    return f"in one 3x3 composite image of {tla_cfg.composite_size} px"


def layout_prompt(tla_cfg: TLAConfig) -> str:
    """The user turn's media part as the chat template writes it (N: the image's token count)."""
    image = "<|vision_start|><|image_pad|> x N<|vision_end|>"
    if tla_cfg.layout == "frames":
        return f"{frame_label(0, 0)}{image} ... {frame_label(NUM_PADS - 1, NUM_STEPS - 1)}{image}"
    if tla_cfg.layout == "video":
        return "".join(f"{pad} pad:<|vision_start|><|video_pad|> x N<|vision_end|>" for pad in PAD_NAMES)
    if tla_cfg.layout == "pairs":
        return f"{PAIRS_LABEL}<|vision_start|><|video_pad|> x N<|vision_end|>"
    return image


def write_model_card(model_dir: Path, cfg: PretrainConfig, check: dict, train_samples: int) -> Path:
    from huggingface_hub import ModelCardData

    import tla

    data = ModelCardData(library_name="transformers", pipeline_tag="image-text-to-text", license="apache-2.0",
                         tags=["tactile", "robotics", "peg-in-hole", "qwen2_vl", "tla", "pretraining"])
    c = cfg.corpus
    examples = "\n".join(f"- {k}: {v[0]}" for k, v in describe(c)["questions"].items())
    body = f"""
# Tactile-language base model (tiny Qwen2-VL, TLA {tla.__version__})

A {cfg.tla.model.tiny.text_layers}-layer Qwen2-VL ({cfg.tla.model.tiny.text_hidden}-wide language model,
{cfg.tla.model.tiny.vision_depth}-block vision tower), trained from random initialisation by `tla pretrain`
to answer questions about the touch of a simulated peg-in-hole attempt. Made for the TLA project's CPU-scale
test of the paper's recipe (load a base, freeze the vision tower and merger, LoRA on the language model).

## Training data
{train_samples} question-answer pairs from {c.attempts} failed insertion attempts in the TLA tactile simulator
(seed {c.seed}): peg shapes {', '.join(c.shapes)}, clearances {', '.join(map(str, c.clearances))} mm. No
evaluation shape ({', '.join(SHAPES)}) and no evaluation clearance
({', '.join(map(str, EVALUATION_CLEARANCES))} mm) is in it. Each attempt is asked one question of each kind (wording drawn from templates):
{examples}

## Training
Every weight from random initialisation, AdamW (lr {cfg.train.lr:g}, cosine, batch {cfg.train.batch_size}), next-token
loss on the answers, {'each answer' if cfg.loss == 'answer' else 'each answer token'} weighed the same (`loss={cfg.loss}`): {warmup_words(cfg)}then
{cfg.train.max_steps} steps on every question kind.

## Input
Each prompt is Qwen2-VL's chat: the 8 tactile frames (left pad t0..t3, right pad t0..t3) of the
`{cfg.tla.modality}` modality, {layout_words(cfg.tla)}, then the question:

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n{layout_prompt(cfg.tla)}{{question}}<|im_end|>\\n<|im_start|>assistant\\n

`tla_pretrain.json` holds the exact input settings, the corpus and the training config.

## Held-out check
{check['samples']} questions about held-out attempts (other seeds, same shapes), greedy decoding, this folder
loaded with `Qwen2VLForConditionalGeneration.from_pretrained` in a fresh process:

{accuracy_table(check)}

`error` counts the share of the three axes whose sign is right. Chance is the most frequent answer of the
same samples (a model that ignores the touch).

## Limitations
A 0.69 M-parameter model of a simulator, not of real sensors; its vocabulary is a byte-level BPE trained on
this corpus and the TLA's answers, not Qwen2-VL's.
"""
    text = f"---\n{data.to_yaml()}\n---\n{body}"
    path = model_dir / "README.md"
    path.write_text(text)
    return path


def plot_heldout(check: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = list(check["kinds"])
    acc = [100 * check["kinds"][k]["accuracy"] for k in kinds]
    ch = [100 * check["kinds"][k]["chance"] for k in kinds]
    x = np.arange(len(kinds))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(x - 0.2, acc, 0.4, label="pretrained model")
    ax.bar(x + 0.2, ch, 0.4, label="chance (most frequent answer)", color="0.7")
    ax.set_xticks(x, kinds)
    ax.set_ylabel("held-out accuracy %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("tla pretrain: contact questions on held-out attempts")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_config(out: str | Path) -> PretrainConfig:
    return from_dict(PretrainConfig, json.loads((Path(out) / CONFIG_FILE).read_text())["config"])


