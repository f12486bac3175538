"""Diffusion Policy: DDPM training (epsilon prediction), DDPM or DDIM sampling, EMA weights for predict.

Actions are min/max-normalised to [-1, 1] (so `clip_sample` clips to the data range), repeated over
`horizon` steps for training, and the first step of the denoised sequence is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from tla.config import from_dict, to_dict
from tla.policies.base import OBSERVATION, Prediction, TrainablePolicy, check_batch
from tla.policies.dp.config import DPConfig
from tla.policies.dp.model import DiffusionNet
from tla.policies.ema import EMA
from tla.policies.files import load_weights, read_checkpoint, save_checkpoint
from tla.policies.frames import ImagePolicy, preprocess, tiny_train_overrides
from tla.policies.normalizer import ActionNormalizer
from tla.sim.modality import check_modality


class DPPolicy(ImagePolicy, TrainablePolicy):
    name = "dp"

    def __init__(self, config: DPConfig | None = None, model: DiffusionNet | None = None):
        """A fresh seeded network from `config`, or `model` as is (its EMA copy starts from it)."""
        self.config = cfg = config or DPConfig()
        check_modality(cfg.modality)
        if cfg.horizon % 2 ** (len(cfg.down_dims) - 1):
            raise ValueError(f"horizon {cfg.horizon} must be divisible by 2**(len(down_dims)-1)")
        if model is None:
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed)
                model = DiffusionNet(cfg)
        self.model = model
        self.ema = EMA(self.model, cfg.ema_power, cfg.ema_max_decay) if cfg.use_ema else None
        self.normalizer = ActionNormalizer("minmax")
        kw = {
            "num_train_timesteps": cfg.num_train_timesteps,
            "beta_schedule": cfg.beta_schedule,
            "clip_sample": cfg.clip_sample,
            "prediction_type": cfg.prediction_type,
        }
        self.noise_scheduler = DDPMScheduler(**kw)
        self.sampler = (
            DDIMScheduler(**kw, set_alpha_to_one=True) if cfg.sampler == "ddim" else DDPMScheduler(**kw)
        )

    @staticmethod
    def train_overrides(preset: str, split: str) -> list[str]:
        """Trainer defaults for DP (Chi et al.: AdamW lr 1e-4, weight decay 1e-6, batch 64, cosine)."""
        if preset == "paper":
            return [
                "batch_size=64",
                "grad_accum=1",
                "lr=1e-4",
                "weight_decay=1e-6",
                "epochs=100",
                "warmup_ratio=0.02",
            ]
        # tiny: ~90 samples/s through the trainer on 1 CPU thread -> ~5-7 min (5.7k sp / 7.6k mp train samples)
        return tiny_train_overrides(split, weight_decay=1e-6)

    # ---------------------------------------------------------------- training
    def loss(self, model, batch: dict):
        k = self.config.noise_samples
        x0 = (
            self.normalizer.normalize(batch["action"])
            .repeat(k, 1)[:, None]
            .expand(-1, self.config.horizon, -1)
        )
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        pred = model(batch["obs"], self.noise_scheduler.add_noise(x0, noise, t), t, repeat=k)
        loss = F.mse_loss(pred, noise)
        return loss, {"loss": float(loss.detach())}

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.model)

    def extra_state(self) -> dict:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    # --------------------------------------------------------------- inference
    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.model

    @torch.no_grad()
    def sample(self, net: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """Denoise a (B, horizon, 3) sequence from seeded noise; returns normalised actions."""
        cfg = self.config
        gen = torch.Generator(device=obs.device).manual_seed(cfg.seed)
        x = torch.randn((obs.shape[0], cfg.horizon, 3), generator=gen, device=obs.device)
        cond = net.encoder(obs)
        steps = cfg.ddim_steps if cfg.sampler == "ddim" else cfg.num_train_timesteps
        self.sampler.set_timesteps(steps, device=obs.device)
        for t in self.sampler.timesteps:
            eps = net.unet(x, t.to(obs.device), cond)
            x = self.sampler.step(eps, t, x, generator=gen).prev_sample
        return x

    @torch.no_grad()
    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        """batch: `observation` uint8 (B, 8, H, W, 3), `shape` B names (unused: one net for every peg)."""
        batch = check_batch(self, batch)
        net = self.eval_model
        was_training = net.training
        net.eval()
        obs = preprocess(batch[OBSERVATION], self.config.image_size, self.config.input_format)
        x = self.sample(net, obs.to(next(net.parameters()).device))
        net.train(was_training)
        actions = self.normalizer.unnormalize(x[:, 0]).cpu().numpy().astype(np.float32)
        return Prediction(actions=actions)

    # ------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path) -> None:
        weights = {"model": self.model.state_dict()}
        if self.ema is not None:
            weights["ema"] = self.ema.model.state_dict()
        save_checkpoint(
            directory,
            self.name,
            {**to_dict(self.config), "ema_step": self.ema.step if self.ema else 0},
            self.normalizer,
            weights,
        )

    def save_pretrained(self, directory: str | Path, **kwargs):
        """A Hugging Face folder (`PyTorchModelHubMixin`) of the weights predict uses (the EMA copy when
        there is one): model.safetensors, config.json (DP config + normaliser), README.md,
        observation.json; `kwargs` go to the mixin (e.g. push_to_hub, repo_id)."""
        from tla.policies.registry import save_pretrained

        return save_pretrained(self, self.eval_model, directory, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> DPPolicy:
        """The policy `save_pretrained` wrote (a local folder or a Hub repo id); training would go on from
        the published (EMA) weights."""
        from tla.policies.registry import load_pretrained, trained_on

        net, hub, local = load_pretrained(DiffusionNet, cls.name, directory, **kwargs)
        policy = cls(from_dict(DPConfig, hub["cfg"]), model=net)
        policy.normalizer = ActionNormalizer.from_dict(hub["normalizer"])
        policy.observation_spec, policy.sim_config = trained_on(local)
        return policy

    @classmethod
    def load(cls, directory: str | Path) -> DPPolicy:
        """A run's policy folder (`save`), or a `save_pretrained` folder."""
        from tla.policies.registry import is_hub_folder

        if is_hub_folder(directory):
            return cls.from_pretrained(directory)
        cfg, normalizer = read_checkpoint(directory, cls.name)
        ema_step = cfg.pop("ema_step", 0)
        policy = cls(from_dict(DPConfig, cfg))
        policy.model.load_state_dict(load_weights(directory, "model"))
        if policy.ema is not None:
            policy.ema.load_state_dict({"step": ema_step, "model": load_weights(directory, "ema")})
        policy.normalizer = normalizer
        return policy
