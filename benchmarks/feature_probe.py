"""Where does a trained policy lose the action? Linear probes on its internal features, scored on the episodes
the run held out of its own training split (never a test split).

For a TLA run: the vision tower's merged tokens (every token of the observation, concatenated), and the
language model's last hidden state at the answer's start (after the prompt, from which the first answer token
is predicted). For a BC run: the ResNet trunk's pooled features. A ridge regression from the features to the
action (mm, mm, deg) is fitted on the run's training episodes (a seeded subsample; the ridge strength chosen on
a fifth of them) and scored on its validation episodes with the offline direction accuracy, next to the run's
own answers on the same samples. A probe well above the answers says the representation holds what the output
loses.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/feature_probe.py --run RUN --data DATA [--train-samples 3000]

Prints JSON (one object per feature: direction x / y / rz %, L1 x / y / rz, the ridge strength, the feature
size). ~2-3 min for a tiny TLA run on one core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

RIDGE = (1.0, 10.0, 100.0, 1e3, 1e4)


@torch.no_grad()
def features(policy, kind: str, items: list[dict]) -> dict[str, np.ndarray]:
    """{feature name: (N, D)} for `items`, in chunks of 32."""
    out: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(items), 32):
        chunk = items[i:i + 32]
        obs = np.stack([it["frames"] for it in chunk])
        if kind == "bc":
            from tla.policies.frames import preprocess

            x = preprocess(torch.as_tensor(obs), policy.config.image_size, policy.config.input_format)
            feats = {"bc_trunk": policy.model.trunk(x).pooler_output.flatten(1)}
        else:
            batch = policy.processor.batch(list(obs), [it["shape"] for it in chunk])  # prompts end at the answer
            visual = policy.adapter.vision_tower(policy.model)
            tokens = visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
            if not torch.is_tensor(tokens):  # newer transformers return an output object
                tokens = tokens.pooler_output if tokens.pooler_output is not None else tokens.last_hidden_state
            state = policy.model(**batch, output_hidden_states=True, use_cache=False).hidden_states[-1][:, -1]
            feats = {"vision_tokens": tokens.reshape(len(chunk), -1), "lm_answer_start": state}
        for k, v in feats.items():
            out.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def ridge_probe(f_train, y_train, f_test, y_test, seed: int = 0) -> dict:
    from tla.eval.offline import GoalTolerance, direction_correct

    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    a = np.c_[(f_train - mu) / sd, np.ones(len(f_train))]
    b = np.c_[(f_test - mu) / sd, np.ones(len(f_test))]
    perm = np.random.default_rng(seed).permutation(len(a))
    fit, pick = perm[len(a) // 5:], perm[: len(a) // 5]

    def solve(rows, lam):
        x = a[rows]
        return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y_train[rows])

    def direction(w, x, y):
        return direction_correct(x @ w, y, GoalTolerance()).mean()

    lam = max(RIDGE, key=lambda r: direction(solve(fit, r), a[pick], y_train[pick]))
    return {**scores(b @ solve(np.arange(len(a)), lam), y_test), "ridge": lam, "dim": int(f_train.shape[1])}


def scores(actions, labels) -> dict:
    """Direction accuracy (%) and L1 per axis of `actions` against `labels`, both (N, 3)."""
    from tla.eval.offline import GoalTolerance, direction_correct

    right = direction_correct(actions, labels, GoalTolerance()).mean(0)
    return {"direction_x_y_rz": [round(100 * float(v), 1) for v in right],
            "l1_x_y_rz": [round(float(v), 3) for v in np.abs(actions - labels).mean(0)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="the dataset the run trained on")
    ap.add_argument("--train-samples", type=int, default=3000, help="training-episode samples the probes fit")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from tla.data.dataset import TactileDataset
    from tla.eval.offline import training_record, validation_indices
    from tla.policies.base import batch_for, policy_modality
    from tla.policies.registry import load_policy, policy_name
    from tla.train.trainer import split_train_val

    torch.set_num_threads(1)
    record = training_record(args.run)
    split, held_out = validation_indices(args.run, args.data)
    policy = load_policy(args.run)  # in inference mode: BC's batch norm reads its running statistics
    kind = policy_name(args.run)
    ds = TactileDataset(args.data, split, modality=policy_modality(policy))
    train_idx, _ = split_train_val(ds, record["train"]["val_fraction"], record["train"]["seed"])
    train_idx = np.random.default_rng(args.seed).permutation(train_idx)[: args.train_samples]
    train_items, val_items = [ds[int(i)] for i in train_idx], [ds[int(i)] for i in held_out]
    y_train = np.stack([it["action"] for it in train_items])
    y_val = np.stack([it["action"] for it in val_items])

    f_train, f_val = features(policy, kind, train_items), features(policy, kind, val_items)
    result = {name: ridge_probe(f_train[name], y_train, f_val[name], y_val, args.seed) for name in f_train}
    answers = policy.predict(batch_for(policy, np.stack([it["frames"] for it in val_items]),
                                       [it["shape"] for it in val_items])).actions
    result["answers"] = scores(answers, y_val)
    print(json.dumps({"run": str(args.run), "policy": kind, "validation_samples": len(val_items),
                      "train_samples": len(train_items), **result}, indent=2))


if __name__ == "__main__":
    main()
