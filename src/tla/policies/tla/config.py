"""Typed config of the TLA policy (backbone, LoRA, prompt/image, generation); `tiny` and `paper` presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tla.config import apply_overrides
from tla.data.text import DEFAULT_SCALE, check_answer_format, longest_answer
from tla.policies.preprocess import FramePreprocess
from tla.policies.tla.adapters import check_adapter
from tla.policies.tla.layout import check_layout
from tla.sim.modality import check_modality


@dataclass
class TinyBackbone:
    """Random-init Qwen2-VL small enough to train on 2 CPU cores (~0.6 M parameters with vocab 512)."""

    text_layers: int = 2
    text_hidden: int = 128
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 256
    vision_depth: int = 2
    vision_embed: int = 64
    vision_heads: int = 4
    vocab_size: int = 512  # byte-level BPE trained in-process on the prompt/answer corpus


@dataclass
class ModelConfig:
    preset: Literal["tiny", "pretrained"] = "tiny"
    path: str | None = None  # local HF checkpoint dir (e.g. Qwen2-VL-7B-Instruct); required for "pretrained"
    # the VLM family (tla.policies.tla.adapters.ADAPTERS); runs saved before this key read the default
    adapter: str = "qwen2_vl"
    # "lora": frozen backbone + LoRA on the language model's linears (pretrained weights);
    # "full": every weight trains (a random-init backbone: a frozen random ViT would learn nothing).
    train_mode: Literal["lora", "full"] = "full"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    freeze_vision: bool = True  # vision tower + merger (only consulted in lora mode; full trains all)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on a bf16 GPU, fp32 on CPU
    gradient_checkpointing: bool = False
    # a learned absolute 2D position table added to the vision tower's patch embeddings (Qwen2-VL has none);
    # not in the paper's recipe: the tiny preset turns it on (see position.py)
    position_table: bool = False
    seed: int = 0  # initialises the tiny backbone (deterministic for a fixed seed)
    tiny: TinyBackbone = field(default_factory=TinyBackbone)


@dataclass
class GenerateConfig:
    num_beams: int = 3  # beam search as in the paper; 1 = greedy
    # which action the beams give: "top" = the best beam's text (the paper); "mean" = the mean of every
    # returned beam's action weighted by its probability (an estimate of the expected action, as a regression
    # head gives; tla.policies.tla.policy.mean_action). The text reported is the top beam's either way.
    decode: str = "top"
    max_new_tokens: int = 24  # '[-100, -100, -150]' + end token is < 20 tokens even with one token per digit
    # beam search restricted to the answer grammar (tla.policies.tla.grammar): no answer can fail to parse
    constrained: bool = False
    batch_size: int = 16  # predict() splits larger batches into chunks of this size


@dataclass
class TLAConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    modality: str = "rgb"  # rgb (the paper's camera frames), marker_flow or depth: tla.sim.modality
    # how the 8 frames enter the prompt (tla.policies.tla.layout): "composite" (the paper's 3x3 image),
    # "frames" (8 labelled images of frame_size px), "video" (2 labelled 4-frame videos of frame_size px) or
    # "pairs" (one 8-frame video, the pads interleaved: each temporal patch holds both pads at one instant)
    layout: str = "composite"
    composite_size: int = 224  # 3x3 composite side in px; must be a multiple of 28 (patch 14 x merge 2)
    frame_size: int = 56  # side of each frame of the frames, video and pairs layouts; a multiple of 28
    # frame preprocessing before the composite; the paper feeds raw frames (all off); for rgb on the CPU
    # scale, removing the markers and the mean brightness makes the small model learn (tla.policies.preprocess)
    preprocess: FramePreprocess = field(default_factory=FramePreprocess)
    scale: tuple[float, float, float] = DEFAULT_SCALE  # action text scale, stored with the run
    # the target text: "action" (the paper: '[-45, 30, -150]') or "contact_action" (contact reasoning: the
    # contact the simulator reports, then the action, tla.data.text.encode_answer; needs
    # generate.max_new_tokens >= 78)
    answer: str = "action"
    # write '+' before positive numbers ('[-45, +30, 0]'): each axis's first answer token is then its direction
    # ('-', '+' or '0'), one token each, instead of '-', '0' or one of nine leading digits. Not the paper's text.
    signed_answer: bool = False
    # weight of an auxiliary loss during training only (tla.policies.tla.action_aux): a linear head regresses the
    # action from the language model's last hidden state before the answer (smooth L1, actions over the label
    # caps). The head is dropped when the policy is saved; the policy still acts only through its text.
    action_aux_weight: float = 0.0
    max_length: int = 2048  # guard on the tokenised prompt + answer

    @property
    def image_size(self) -> int:
        """The side of every image the layout makes."""
        return self.composite_size if self.layout == "composite" else self.frame_size


DECODES = ("top", "mean")


def check_decode(decode: str) -> str:
    if decode not in DECODES:
        raise ValueError(f"unknown generate.decode {decode!r}; choose one of {', '.join(DECODES)}")
    return decode


def check_answer_budget(cfg: TLAConfig, constrained: bool | None = None) -> None:
    """With contact reasoning or constrained decoding, the decoding budget holds the longest answer of the
    format, one token per character (the worst tokenisation, and what constrained decoding may produce), plus
    the end token: only then is a whole answer always reachable. (A plain answer with a short budget is the
    caller's choice: tests decode 6 tokens.)"""
    need = len(longest_answer(check_answer_format(cfg.answer))) + 1
    constrained = cfg.generate.constrained if constrained is None else constrained
    if (cfg.answer != "action" or constrained) and cfg.generate.max_new_tokens < need:
        raise ValueError(f"generate.max_new_tokens={cfg.generate.max_new_tokens} cannot hold the longest "
                         f"{cfg.answer} answer ({need - 1} characters + the end token); set "
                         f"generate.max_new_tokens={need}")


def tla_preset(preset: str = "tiny", overrides: list[str] | None = None) -> TLAConfig:
    """`tiny`: random-init small backbone, full training, 168 px composite (CPU: each 56 px cell is exactly
    4 x 4 patches, so no merged token straddles two frames; ~40% cheaper per step than 224 px at the same
    accuracy in calibration), batch 16 (`TLAPolicy.train_overrides`), with two departures from
    the paper that make it learn at this scale (measured by `tla ablate`): it reads the `marker_flow`
    modality (the tracked marker displacement rendered as images; on raw camera frames the small model
    gives one constant answer, and x is only readable in the marker motion), and a learned position table
    in the vision tower. The frame preprocessing (`preprocess.*`, for rgb) stays off. It acts on the
    probability-weighted mean of its beams' actions (`generate.decode=mean`, chosen on the validation
    episodes of sp_train; the paper acts on the top beam).
    `paper`: pretrained Qwen2-VL-7B from `model.path`, LoRA, 616 px composite (1936 patches, 484 tokens),
    raw rgb frames, no position table: the paper's recipe."""
    if preset == "tiny":
        cfg = TLAConfig(modality="marker_flow", composite_size=168, model=ModelConfig(position_table=True),
                        generate=GenerateConfig(decode="mean"))
    elif preset == "paper":
        cfg = TLAConfig(model=ModelConfig(preset="pretrained", train_mode="lora"), composite_size=616)
    else:
        raise ValueError(f"unknown TLA preset {preset!r}; choose tiny or paper")
    cfg = apply_overrides(cfg, overrides or [])
    cfg.preprocess.validate()
    check_modality(cfg.modality)
    check_adapter(cfg.model.adapter)
    if cfg.composite_size % 28:
        raise ValueError(
            f"composite_size must be a multiple of 28 (patch 14 x merge 2), got {cfg.composite_size}"
        )
    check_layout(cfg.layout, cfg.image_size)
    check_decode(cfg.generate.decode)
    check_answer_budget(cfg)
    if cfg.model.preset == "pretrained" and not cfg.model.path:
        raise ValueError(
            "the pretrained backbone needs model.path=/local/Qwen2-VL-7B-Instruct (nothing is downloaded)"
        )
    return cfg
