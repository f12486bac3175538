"""BC policy: the TrainablePolicy wrapper (collate, loss, normaliser, predict, save/load).

Loss: L1 on the mean/std-normalised action by default. The labels are clipped (eq. 1-3), so many sit
exactly on the caps (±1 mm, ±1.5 deg) or at 0; L1 regresses the conditional median, which lands on those
values instead of averaging across them, is robust to the occasional ambiguous observation, and is the
metric the offline tables report. `loss="mse"` is available.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tla.config import from_dict, to_dict
from tla.policies.base import OBSERVATION, Prediction, TrainablePolicy, check_batch
from tla.policies.bc.config import BCConfig
from tla.policies.bc.model import BCNet
from tla.policies.files import load_weights, read_checkpoint, save_checkpoint
from tla.policies.frames import ImagePolicy, preprocess, tiny_train_overrides
from tla.policies.normalizer import ActionNormalizer
from tla.sim.modality import check_modality

AXES = ("dx", "dy", "drz")


class BCPolicy(ImagePolicy, TrainablePolicy):
    name = "bc"

    def __init__(self, config: BCConfig | None = None, model: BCNet | None = None):
        """A fresh seeded network from `config`, or `model` as is."""
        self.config = config or BCConfig()
        check_modality(self.config.modality)
        if model is None:
            with torch.random.fork_rng():
                torch.manual_seed(self.config.seed)
                model = BCNet(self.config)
        self.model = model
        self.normalizer = ActionNormalizer("meanstd")

    @staticmethod
    def train_overrides(preset: str, split: str) -> list[str]:
        """Trainer defaults for BC (before the user's train.* overrides)."""
        if preset == "paper":
            return [
                "batch_size=64",
                "grad_accum=1",
                "lr=3e-4",
                "weight_decay=1e-4",
                "epochs=50",
                "warmup_ratio=0.02",
            ]
        # tiny: ~125 samples/s through the trainer on 1 CPU thread -> ~5-7 min (5.7k sp / 7.6k mp train samples)
        return tiny_train_overrides(split, weight_decay=1e-4)

    # ---------------------------------------------------------------- training
    def loss(self, model, batch: dict):
        pred = model(batch["obs"])
        target = self.normalizer.normalize(batch["action"])
        loss = F.l1_loss(pred, target) if self.config.loss == "l1" else F.mse_loss(pred, target)
        with torch.no_grad():
            err = (self.normalizer.unnormalize(pred) - batch["action"]).abs().mean(0)
        return loss, {"loss": float(loss.detach()), **{f"l1_{a}": float(e) for a, e in zip(AXES, err)}}

    # --------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        """batch: `observation` uint8 (B, 8, H, W, 3), `shape` B names (unused: one net for every peg)."""
        batch = check_batch(self, batch)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        obs = preprocess(batch[OBSERVATION], self.config.image_size, self.config.input_format).to(device)
        actions = self.normalizer.unnormalize(self.model(obs)).cpu().numpy().astype(np.float32)
        self.model.train(was_training)
        return Prediction(actions=actions)

    # ------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path) -> None:
        save_checkpoint(
            directory, self.name, to_dict(self.config), self.normalizer, {"model": self.model.state_dict()}
        )

    def save_pretrained(self, directory: str | Path, **kwargs):
        """A Hugging Face folder (`PyTorchModelHubMixin`): model.safetensors, config.json (BC config +
        normaliser), README.md, observation.json; `kwargs` go to the mixin (e.g. push_to_hub, repo_id)."""
        from tla.policies.registry import save_pretrained

        # the trunk's local source folder is history, not something to rebuild the net from
        return save_pretrained(self, self.model, directory, cfg=self.config.replace(pretrained_dir=None),
                               extra={"pretrained_dir": self.config.pretrained_dir}, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> BCPolicy:
        """The policy `save_pretrained` wrote (a local folder or a Hub repo id)."""
        from tla.policies.registry import load_pretrained, trained_on

        net, hub, local = load_pretrained(BCNet, cls.name, directory, **kwargs)
        cfg = from_dict(BCConfig, hub["cfg"]).replace(pretrained_dir=hub.get("pretrained_dir"))
        policy = cls(cfg, model=net)
        policy.normalizer = ActionNormalizer.from_dict(hub["normalizer"])
        policy.observation_spec, policy.sim_config = trained_on(local)
        return policy

    @classmethod
    def load(cls, directory: str | Path) -> BCPolicy:
        """A run's policy folder (`save`), or a `save_pretrained` folder."""
        from tla.policies.registry import is_hub_folder

        if is_hub_folder(directory):
            return cls.from_pretrained(directory)
        cfg, normalizer = read_checkpoint(directory, cls.name)
        config = from_dict(BCConfig, cfg)
        policy = cls(config.replace(pretrained_dir=None))  # the weights come from the checkpoint
        policy.model.load_state_dict(load_weights(directory, "model"))
        policy.config = config
        policy.normalizer = normalizer
        return policy
