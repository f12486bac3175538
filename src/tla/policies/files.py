"""The files of a saved baseline policy: policy.json (name + resolved config, as the registry expects),
normalizer.json and one safetensors file per weight set."""

from __future__ import annotations

import json
from pathlib import Path

from tla.policies.normalizer import ActionNormalizer


def save_checkpoint(directory, name: str, config: dict, normalizer: ActionNormalizer, weights: dict) -> None:
    """Write policy.json (policy name + resolved config, as the registry expects), normalizer.json and one safetensors per entry."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "policy.json").write_text(json.dumps({"policy": name, "config": config}, indent=2, sort_keys=True))
    (d / "normalizer.json").write_text(json.dumps(normalizer.to_dict(), indent=2))
    for fname, state in weights.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(d / f"{fname}.safetensors")
        )


def read_checkpoint(directory, name: str) -> tuple[dict, ActionNormalizer]:
    d = Path(directory)
    meta = json.loads((d / "policy.json").read_text())
    if meta.get("policy") != name:
        raise ValueError(f"{d} holds a {meta.get('policy')!r} checkpoint, not {name!r}")
    return meta["config"], ActionNormalizer.from_dict(json.loads((d / "normalizer.json").read_text()))


def load_weights(directory, fname: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / f"{fname}.safetensors"))
