"""Preference tuning of a fine-tuned TLA (DPO, as VTLA does after supervised fine-tuning).

For each training sample the fine-tuned model proposes `candidates` answers (its beam search's best
beams); the one whose action is closest to the label (L1 over x, y, rz in mm, mm, deg) is `chosen`, the
farthest `rejected` (an answer that does not parse is the farthest of all); a sample whose candidates are
all equally far gives no pair. The model is then trained on the pairs with the DPO loss

    -log sigmoid(beta * [(log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))])

where log pi(answer) is the summed log-probability of the answer tokens and the end token given the
observation and the instruction, and `ref` is the fine-tuned model before this stage: its log-probabilities
are computed once, when the pairs are made, and stored with them (no second model in memory). At the
first step the policy *is* the reference, so the loss is exactly log 2.

Why not TRL's `DPOTrainer` (trl 1.16, read in its source): for vision data it builds every batch with the
model's `ProcessorMixin` (for Qwen2-VL, `Qwen2VLProcessor`, whose video processor needs torchvision, not a
dependency here) from the images it is handed, not through this project's layouts (the composite, 8 labelled frames, a
video) and adapters; it refuses `precompute_ref_log_probs` for vision data, so a second model would sit in memory; and it
trains in its own loop. The project's trainer (exact resume, validation L1 and the collapse guard) runs this
stage instead, through `PreferencePolicy`, the `TrainablePolicy` contract every policy trains by.

    pairs   = make_pairs(policy, dataset, indices, candidates=4)     # list[Pair]
    data    = PairDataset(dataset, pairs, episode_ids(dataset))     # items the trainer reads
    trainee = PreferencePolicy(policy, beta=0.1)                    # collate / loss / predict / save
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tla.policies.base import Prediction, TrainablePolicy
from tla.policies.tla.processing import IGNORE


@dataclass(frozen=True)
class Pair:
    """One preference pair: the dataset sample `index`, the `chosen` and `rejected` answer texts, their
    L1 distances to the label (mm + mm + deg; inf for an answer that does not parse) and their summed
    log-probabilities under the reference model (the fine-tuned policy before preference tuning)."""

    index: int
    chosen: str
    rejected: str
    l1_chosen: float
    l1_rejected: float
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["l1_rejected"] = None if not np.isfinite(self.l1_rejected) else self.l1_rejected  # JSON has no inf
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Pair:
        return cls(**{**d, "l1_rejected": float("inf") if d["l1_rejected"] is None else d["l1_rejected"]})


def answer_l1(text: str, label: np.ndarray, scale) -> float:
    """L1 distance (mm + mm + deg) of an answer's action to the label; inf when the answer does not parse.
    Rounded to 1e-6 (the text's resolution is 0.01): equally far answers must tie, not differ by a float ulp."""
    from tla.data.text import decode_action

    action = decode_action(text, scale)
    return float("inf") if action is None else round(float(np.abs(np.asarray(action) - np.asarray(label)).sum()), 6)


def rank_candidates(texts: list[str], label: np.ndarray, scale, index: int) -> Pair | None:
    """The pair of one sample's candidates: closest (chosen) and farthest (rejected) from the label; None when
    no two candidates differ in distance (nothing to prefer). Ties keep the earlier (higher-ranked) beam."""
    dist = [answer_l1(t, label, scale) for t in texts]
    best, worst = int(np.argmin(dist)), int(np.argmax(dist))
    if not dist[worst] > dist[best]:
        return None
    return Pair(index, texts[best], texts[worst], dist[best], dist[worst])


def sequence_logps(model, batch: dict) -> torch.Tensor:
    """batch: a training batch (input_ids, attention_mask, pixels, labels (N, L) with the prompt at -100)
    -> (N,) the summed log-probability of each sequence's labelled tokens (answer + end token).

    The log-softmax is taken over the answer positions only: a 7B model's vocabulary (152k) times a
    ~500-token prompt would be a large tensor for nothing."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    picked = torch.log_softmax(logits[mask].float(), dim=-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[mask]
    return torch.zeros(labels.shape[0], device=picked.device, dtype=picked.dtype).index_add(0, rows, picked)


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The DPO loss (Rafailov et al. 2023) over (B,) summed log-probabilities, and its diagnostics: the
    share of pairs whose implicit reward prefers the chosen answer, and the mean reward margin."""
    reward_chosen = beta * (logp_chosen - ref_chosen)
    reward_rejected = beta * (logp_rejected - ref_rejected)
    margin = reward_chosen - reward_rejected
    loss = -F.logsigmoid(margin).mean()
    margin, logp_chosen, logp_rejected = margin.detach(), logp_chosen.detach(), logp_rejected.detach()
    return loss, {"reward_accuracy": float((margin > 0).float().mean()), "reward_margin": float(margin.mean()),
                  "logp_chosen": float(logp_chosen.mean()), "logp_rejected": float(logp_rejected.mean())}


@torch.no_grad()
def make_pairs(policy, dataset, indices, candidates: int = 4, batch_size: int = 32,
               progress: bool = True) -> list[Pair]:
    """The preference pairs of `dataset[indices]` under the fine-tuned TLA `policy` (eval mode, beam search
    with `candidates` beams, all returned), each with its reference log-probabilities."""
    if candidates < 2:
        raise ValueError(f"preference pairs need at least 2 candidates per sample, got {candidates}")
    pairs: list[Pair] = []
    indices = [int(i) for i in indices]
    bar = tqdm(total=len(indices), desc="preference pairs", unit="sample", disable=not progress)
    for at in range(0, len(indices), batch_size):
        chunk = indices[at : at + batch_size]
        items = [dataset[i] for i in chunk]
        texts, _ = policy.generate_batched(np.stack([it["frames"] for it in items]), [it["shape"] for it in items],
                                           beams=candidates, returned=candidates)
        made = [rank_candidates([str(t) for t in row], it["action"], policy.cfg.scale, i)
                for i, it, row in zip(chunk, items, texts, strict=True)]
        kept = [(p, it) for p, it in zip(made, items, strict=True) if p is not None]
        if kept:
            ref_c, ref_r = reference_logps(policy, [it for _, it in kept], [p for p, _ in kept])
            pairs += [Pair(p.index, p.chosen, p.rejected, p.l1_chosen, p.l1_rejected, float(c), float(r))
                      for (p, _), c, r in zip(kept, ref_c, ref_r, strict=True)]
        bar.update(len(chunk))
    bar.close()
    return pairs


def reference_logps(policy, items: list[dict], pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """(B,) log-probabilities of the chosen and of the rejected answers under `policy` as it is now (eval
    mode: no dropout), computed exactly as the training loss computes them."""
    was_training = policy.model.training
    policy.model.eval()
    try:
        batch = pair_batch(policy, items, [p.chosen for p in pairs], [p.rejected for p in pairs])
        dev = policy.device
        batch = {k: v.to(dev) for k, v in batch.items()}
        logps = sequence_logps(policy.model, batch).float().cpu().numpy()
    finally:
        policy.model.train(was_training)
    n = len(pairs)
    return logps[:n], logps[n:]


def pair_batch(policy, items: list[dict], chosen: list[str], rejected: list[str]) -> dict[str, torch.Tensor]:
    """One training batch of 2B sequences: the B samples answered by their chosen texts, then the same
    samples answered by their rejected texts."""
    obs = [it["frames"] for it in items] * 2
    shapes = [it["shape"] for it in items] * 2
    return policy.processor.batch(obs, shapes, list(chosen) + list(rejected))


class PairDataset(torch.utils.data.Dataset):
    """The pairs as items the trainer reads: the sample (frames, shape, action, episode) with its pair.
    Episode ids are the samples' own, so the trainer's validation split stays disjoint by episode."""

    def __init__(self, dataset, pairs: list[Pair], episodes: np.ndarray):
        """episodes: the episode id of every sample of `dataset` (the trainer's `episode_ids(dataset)`)."""
        self.dataset, self.pairs = dataset, list(pairs)
        self.observation_spec = getattr(dataset, "observation_spec", None)
        self.sim_config = getattr(dataset, "sim_config", None)
        self.info = getattr(dataset, "info", None)
        self.episode_indices = np.asarray(episodes)[[p.index for p in self.pairs]].reshape(-1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        return {**self.dataset[p.index], "chosen": p.chosen, "rejected": p.rejected,
                "ref_chosen": p.ref_chosen, "ref_rejected": p.ref_rejected}


class PreferencePolicy(TrainablePolicy):
    """A fine-tuned `TLAPolicy` trained by DPO on pairs (`PairDataset` items). Everything but training
    (predict, save, load, the config) is the wrapped policy's: what this stage saves is a plain TLA run."""

    name = "tla"

    def __init__(self, policy, beta: float = 0.1, sft_weight: float = 0.0):
        if beta <= 0:
            raise ValueError(f"dpo.beta must be > 0, got {beta}")
        self.policy, self.beta, self.sft_weight = policy, beta, sft_weight
        self.model = policy.model
        self.cfg = policy.cfg
        self.input_features = policy.input_features

    @property
    def modality(self) -> str:
        return self.policy.modality

    def collate(self, items: list[dict]) -> dict:
        batch = pair_batch(self.policy, items, [it["chosen"] for it in items], [it["rejected"] for it in items])
        batch["ref_logps"] = torch.tensor([it["ref_chosen"] for it in items] + [it["ref_rejected"] for it in items],
                                          dtype=torch.float32)
        return batch

    def loss(self, model, batch: dict):
        ref = batch["ref_logps"]
        logps = sequence_logps(model, {k: v for k, v in batch.items() if k != "ref_logps"})
        n = len(ref) // 2
        loss, metrics = dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], self.beta)
        if self.sft_weight:  # RPO-style: the chosen answers' per-token negative log-likelihood as well
            tokens = (batch["labels"][:n, 1:] != IGNORE).sum(1).clamp(min=1)
            nll = (-logps[:n] / tokens).mean()
            loss = loss + self.sft_weight * nll
            metrics["nll_chosen"] = float(nll.detach())
        return loss, metrics

    def predict(self, batch, **options) -> Prediction:
        return self.policy.predict(batch, **options)

    def describe(self) -> dict:
        return self.policy.describe()

    def save(self, directory: str | Path) -> None:
        self.policy.save(directory)

    @classmethod
    def load(cls, directory: str | Path):
        from tla.policies.tla.policy import TLAPolicy

        return TLAPolicy.load(directory)
