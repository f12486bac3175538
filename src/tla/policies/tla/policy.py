"""TLAPolicy: a VLM (its adapter: `adapters/`, Qwen2-VL by default) behind the shared `TrainablePolicy`
contract.

Training = next-token cross-entropy on the answer text + end token: the action (the paper), or with
`answer=contact_action` the contact the simulator reports then the action. Inference = beam search over a
left-padded batch (optionally restricted to the answer grammar: `generate.constrained`), then the
de-tokenizer; text that does not parse gives parse_ok False and a zero action.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from tla.config import from_dict, to_dict
from tla.data.text import decode_action, encode_answer
from tla.policies.base import Prediction, TrainablePolicy
from tla.policies.tla.action_aux import HEAD_ATTR, ActionAuxHead
from tla.policies.tla.adapters import adapter_for
from tla.policies.tla.config import TLAConfig, tla_preset
from tla.policies.tla.model import apply_train_mode, count_parameters
from tla.policies.tla.position import VISION_ATTR, attach_position_table
from tla.policies.tla.processing import TLAProcessor

FALLBACK_ACTION = np.zeros(3)  # an unparseable answer moves nothing: the safest action for a retry loop
POSITION_TABLE_FILE = "position_table.safetensors"
AUX_TARGET = "action_target"  # the batch key of the auxiliary loss's target (popped before the model sees it)


def versions() -> dict[str, str]:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


class TLAPolicy(TrainablePolicy):
    name = "tla"
    preset_config = staticmethod(tla_preset)  # (preset, overrides) -> TLAConfig, no model built

    def __init__(self, cfg: TLAConfig, tokenizer=None, model=None):
        self.cfg = cfg
        self.adapter = adapter_for(cfg.model)
        if tokenizer is None:
            tokenizer = _new_tokenizer(cfg)
        self.processor = TLAProcessor(tokenizer, cfg.image_size, cfg.preprocess, cfg.layout, self.adapter)
        if model is None:
            model = apply_train_mode(self.adapter.build(cfg.model, tokenizer), cfg.model, self.adapter)
        self.model = model
        self.adapter.speed_up(model)
        self._grammar = None  # built on the first constrained generation (it scans the vocabulary)
        self.position_table = None
        if cfg.model.position_table:  # trains in every mode: it is new, so there is nothing to keep frozen
            self.position_table = attach_position_table(model, *self.processor.patch_grid(),
                                                        merge=self.processor.merge,
                                                        images=self.processor.position_grids,
                                                        adapter=self.adapter)
        self.aux_head = None
        if cfg.action_aux_weight > 0:  # training only, dropped when saved (action_aux.py); made last, so
            # every other weight starts as it would without it
            self.aux_head = ActionAuxHead(self.adapter.text_hidden_size(model)).to(self.device)
            self.model.add_module(HEAD_ATTR, self.aux_head)  # trains and checkpoints with the model
        if cfg.model.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
            if (
                cfg.model.train_mode == "lora"
            ):  # frozen embeddings: checkpointed blocks need a grad-carrying input
                self.model.enable_input_require_grads()

    @staticmethod
    def train_overrides(preset: str, split: str) -> list[str]:
        """Trainer defaults for the TLA (before the user's train.* overrides): the tiny preset trains at batch
        16 (calibration, seed 0, sp_test, 3000 steps: 83/77/92% direction accuracy against 80/76/82% at
        batch 8); the paper preset keeps the trainer's paper values."""
        return ["batch_size=16"] if preset == "tiny" else []

    @classmethod
    def build(cls, preset: str = "tiny", overrides: list[str] | None = None) -> TLAPolicy:
        return cls(tla_preset(preset, overrides))

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def parameter_counts(self) -> tuple[int, int]:
        return count_parameters(self.model)

    def describe(self) -> dict:
        trainable, total = self.parameter_counts()
        return {
            "policy": self.name,
            "train_mode": self.cfg.model.train_mode,
            "trainable_params": trainable,
            "total_params": total,
            "layout": self.cfg.layout,
            "composite_size" if self.cfg.layout == "composite" else "frame_size": self.cfg.image_size,
            "modality": self.cfg.modality,
            "preprocess": to_dict(self.cfg.preprocess),
            "position_table": self.cfg.model.position_table,
            "answer": self.cfg.answer,
            "signed_answer": self.cfg.signed_answer,
            "action_aux_weight": self.cfg.action_aux_weight,
            "constrained": self.cfg.generate.constrained,
        }

    # --- training ---
    def answer(self, item: dict) -> str:
        """The target text of a dataset item, at the policy's own scale (so decoding matches)."""
        if self.cfg.answer == "action":
            return encode_answer(item["action"], self.cfg.scale, signed=self.cfg.signed_answer)
        from tla.sim.contact import contact_facts

        missing = [k for k in ("shape", "clearance", "error") if k not in item]
        if missing:
            raise KeyError(f"answer=contact_action needs each item's shape, clearance and error (a tla dataset "
                           f"item); this one lacks {', '.join(missing)}")
        facts = contact_facts(item["shape"], item["clearance"], item["error"])
        return encode_answer(item["action"], self.cfg.scale, facts, signed=self.cfg.signed_answer)

    def grammar(self):
        """The answer grammar for constrained decoding (`tla.policies.tla.grammar`), built once."""
        if self._grammar is None:
            from tla.policies.tla.grammar import AnswerGrammar

            self._grammar = AnswerGrammar(self.tokenizer, self.cfg.answer, self.processor.end_id,
                                          self.cfg.signed_answer)
        return self._grammar

    def collate(self, items: list[dict]) -> dict:
        obs = [it["frames"] for it in items]
        batch = self.processor.batch(obs, [it["shape"] for it in items], [self.answer(it) for it in items])
        if self.aux_head is not None:
            batch[AUX_TARGET] = torch.as_tensor(np.stack([np.asarray(it["action"], np.float32) for it in items]))
        return batch

    def loss(self, model, batch: dict):
        """The answer's cross-entropy; while training with `action_aux_weight`, plus the weighted auxiliary
        action loss (validation losses stay the text's alone, comparable across settings)."""
        batch = dict(batch)
        target = batch.pop(AUX_TARGET, None)
        if self.aux_head is None or target is None or not model.training:
            return model(**batch, use_cache=False).loss, {}
        out = model(**batch, use_cache=False, output_hidden_states=True)
        aux = self.aux_head.loss(out.hidden_states[-1], batch["labels"], target)
        return out.loss + self.cfg.action_aux_weight * aux, {"text_loss": float(out.loss), "aux_action": float(aux)}

    # --- inference ---
    @torch.no_grad()
    def _generate(self, observations, shapes: list[str], beams: int, returned: int, constrained: bool = False,
                  questions: list[str] | None = None):
        """Beam search; the `returned` best beams per observation: texts (B, returned) and their total
        log-probabilities (B, returned) (length_penalty 0, so the score of a beam is its probability).
        `questions` replace the instruction (the pretraining corpus's questions)."""
        g = self.cfg.generate
        batch = self.processor.batch(observations, shapes, questions=questions)
        dev, dtype = self.device, next(self.model.parameters()).dtype
        # pixels (the only floating inputs) in the model's dtype
        batch = {k: v.to(dev, dtype) if v.is_floating_point() else v.to(dev) for k, v in batch.items()}
        extra = {} if returned == 1 else {"num_return_sequences": returned, "length_penalty": 0.0,
                                          "output_scores": True, "return_dict_in_generate": True}
        if constrained:
            extra["prefix_allowed_tokens_fn"] = self.grammar().prefix_allowed_tokens_fn(batch["input_ids"].shape[1])
        out = self.model.generate(
            **batch,
            max_new_tokens=g.max_new_tokens,
            num_beams=beams,
            do_sample=False,
            early_stopping=beams > 1,
            pad_token_id=self.processor.pad_id,
            eos_token_id=self.processor.end_id,
            **extra,
        )
        sequences = out if returned == 1 else out.sequences
        answers = sequences[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(answers, skip_special_tokens=True)
        scores = np.zeros(len(texts)) if returned == 1 else out.sequences_scores.float().cpu().numpy()
        return np.array(texts, dtype=object).reshape(-1, returned), scores.reshape(-1, returned)

    def generate_batched(self, observations, shapes, beams: int, returned: int, constrained: bool = False,
                         questions: list[str] | None = None):
        """`_generate` over chunks of `generate.batch_size`, in eval mode (the training mode is restored):
        texts (B, returned) and log-probabilities (B, returned)."""
        was_training = self.model.training
        self.model.eval()
        texts, scores = [], []
        n = self.cfg.generate.batch_size
        try:
            for i in range(0, len(observations), n):
                asked = {} if questions is None else {"questions": list(questions[i : i + n])}
                t, s = self._generate(observations[i : i + n], list(shapes[i : i + n]), beams, returned, constrained,
                                      **asked)
                texts.append(t)
                scores.append(s)
        finally:
            self.model.train(was_training)
        return np.concatenate(texts), np.concatenate(scores)

    def predict(self, batch: dict, num_beams: int | None = None, decode: str | None = None,
                constrained: bool | None = None) -> Prediction:
        """batch (`tla.policies.base.Policy`): `observation` uint8 (B, 8, H, W, 3), `shape` B names ->
        Prediction: actions (B, 3) by `decode` (default: the run's `generate.decode`), texts = the top
        beam's answers. Options (default: the run's `generate.*`): `num_beams`, `decode`, `constrained`."""
        from tla.policies.base import OBSERVATION, SHAPE, check_batch
        from tla.policies.tla.config import check_answer_budget, check_decode

        batch = check_batch(self, batch)
        observations, shapes = batch[OBSERVATION], batch[SHAPE]
        beams = self.cfg.generate.num_beams if num_beams is None else num_beams
        decode = check_decode(self.cfg.generate.decode if decode is None else decode)
        returned = beams if decode == "mean" else 1
        constrained = self.cfg.generate.constrained if constrained is None else bool(constrained)
        check_answer_budget(self.cfg, constrained)  # a whole answer must be reachable
        texts, scores = self.generate_batched(observations, shapes, beams, returned, constrained)
        parsed = np.array([[_parse(t, self.cfg.scale) for t in row] for row in texts])
        parsed = parsed.reshape(*texts.shape, 3)
        actions = mean_action(parsed, scores)
        ok = np.isfinite(actions).all(axis=1)
        actions[~ok] = FALLBACK_ACTION
        return Prediction(
            actions=actions, texts=[str(t) for t in texts[:, 0]], parse_ok=ok,
            extras={"parse_failures": int((~ok).sum())},
        )

    # --- persistence ---
    def save(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"policy": self.name, "config": to_dict(self.cfg), "versions": versions(), **self.describe()}
        (d / "policy.json").write_text(json.dumps(meta, indent=2))
        self.processor.save(d / "processor")
        # lora: the adapter only (the base is model.path, or the seeded tiny backbone); full: every weight.
        # The position table goes to its own file: the model folder stays a stock Qwen2-VL checkpoint.
        # Neither the position table nor the auxiliary head is part of the checkpoint (the table's hook keeps
        # working while it is unregistered; the head only shapes training).
        table = _unregistered(self.adapter.vision_tower(self.model), VISION_ATTR, self.position_table)
        with table, _unregistered(self.model, HEAD_ATTR, self.aux_head):
            self.model.save_pretrained(d / ("adapter" if self.cfg.model.train_mode == "lora" else "model"))
        if self.position_table is not None:
            from safetensors.torch import save_file

            save_file({"weight": self.position_table.weight.detach().cpu().contiguous()},
                      d / POSITION_TABLE_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> TLAPolicy:
        from transformers import AutoTokenizer

        d = Path(directory)
        cfg = from_dict(TLAConfig, json.loads((d / "policy.json").read_text())["config"])
        adapter = adapter_for(cfg.model)  # runs saved before model.adapter existed read the default
        tokenizer = AutoTokenizer.from_pretrained(d / "processor")
        if cfg.model.train_mode == "lora":
            from peft import PeftModel

            # trainable adapters, as a fresh LoRA run has them, so a saved run can also be fine-tuned further
            # (`tla train --init-from`); inference runs under no_grad either way
            model = PeftModel.from_pretrained(adapter.build(cfg.model, tokenizer), d / "adapter", is_trainable=True)
            if not cfg.model.freeze_vision:
                for n, p in model.named_parameters():
                    if adapter.is_vision(n):
                        p.requires_grad_(True)
        else:
            model = adapter.load(d / "model", cfg.model)
        policy = cls(cfg, tokenizer=tokenizer, model=model)
        if policy.position_table is not None:
            from safetensors.torch import load_file

            f = d / POSITION_TABLE_FILE
            if not f.exists():
                raise FileNotFoundError(f"{f} is missing: this policy was saved with model.position_table=true")
            with torch.no_grad():
                policy.position_table.weight.copy_(load_file(f)["weight"])
        return policy


def _parse(text: str, scale) -> np.ndarray:
    a = decode_action(text, scale)
    return np.full(3, np.nan) if a is None else a


def mean_action(actions: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """actions (B, K, 3) of K beams (NaN rows: answers that did not parse), log_probs (B, K) -> (B, 3): the
    probability-weighted mean of the parsed beams' actions (renormalised over them); NaN where none parsed.
    With K = 1 it is the top beam's action.

    Why: the top beam is the mode of the answer distribution. Where the model is torn between "0" and a
    small move (an error just beyond the c/2 band), the mode is often "0" although the expected move is
    small and in the right direction; the mean is what a regression head (BC) predicts."""
    actions = np.asarray(actions, dtype=float)
    log_probs = np.asarray(log_probs, dtype=float)
    parsed = np.isfinite(actions).all(axis=-1)
    logits = np.where(parsed, log_probs, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    weights = np.where(parsed, np.exp(logits - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    mean = (weights[..., None] * np.nan_to_num(actions)).sum(axis=1) / np.where(total > 0, total, 1.0)
    mean[total[:, 0] == 0] = np.nan
    return mean


@contextlib.contextmanager
def _unregistered(parent: torch.nn.Module, name: str, module: torch.nn.Module | None):
    """`module` (registered on `parent` as `name`) taken out of `parent` for the block, then put back; nothing
    when `module` is None."""
    if module is None:
        yield
        return
    delattr(parent, name)
    try:
        yield
    finally:
        parent.add_module(name, module)


def _new_tokenizer(cfg: TLAConfig):
    if cfg.model.preset == "tiny":
        from tla.policies.tla.tokenizer import train_tiny_tokenizer

        return train_tiny_tokenizer(cfg.model.tiny.vocab_size, adapter_for(cfg.model), answer=cfg.answer,
                                    signed=cfg.signed_answer)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(cfg.model.path)
