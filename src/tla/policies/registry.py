"""Policy registry: name -> class, so the trainer, evaluator, CLI and server build or load any policy.

A registered class implements `TrainablePolicy` plus:
- `build(preset: str, overrides: list[str]) -> policy` (a fresh, untrained policy from a preset), or an
  `__init__(config: Config)` whose dataclass `Config` has `preset_config(preset)`;
- `load(directory) -> policy` (what its `save(directory)` wrote).
Optionally `train_overrides(preset, split) -> list[str]`: the policy's defaults for the trainer config
(learning rate, batch, epochs...), applied before the user's `train.*` overrides.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from pathlib import Path

from tla.config import apply_overrides, to_dict

# name -> "module:Class" (imported lazily: a policy's heavy dependencies load only when it is used)
POLICIES: dict[str, str] = {
    "tla": "tla.policies.tla.policy:TLAPolicy",
    "bc": "tla.policies.bc.policy:BCPolicy",
    "dp": "tla.policies.dp.policy:DPPolicy",
}


def policy_class(name: str):
    if name not in POLICIES:
        raise KeyError(f"unknown policy {name!r}; registered: {sorted(POLICIES)}")
    module, cls = POLICIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def preset_config(name: str, preset: str = "tiny", overrides: list[str] | None = None):
    """A policy preset's resolved config dataclass, without building the model: `cls.preset_config(preset,
    overrides)` where the class has it (TLA), else the `Config` annotated on `cls.__init__(config)`."""
    cls, overrides = policy_class(name), list(overrides or [])
    if hasattr(cls, "preset_config"):
        return cls.preset_config(preset, overrides)
    return apply_overrides(_config_class(cls).preset_config(preset), overrides)


def _config_class(cls):
    hint = typing.get_type_hints(cls.__init__).get("config")
    return next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))


def build_policy(name: str, preset: str = "tiny", overrides: list[str] | None = None):
    """A fresh policy: `cls.build(preset, overrides)`, or else `cls(Config.preset_config(preset))` with the
    dotted overrides applied, `Config` being the type annotated on `cls.__init__(config)`."""
    cls, overrides = policy_class(name), list(overrides or [])
    if hasattr(cls, "build"):
        return cls.build(preset, overrides)
    return cls(preset_config(name, preset, overrides))


def seed_overrides(name: str, seed: int) -> list[str]:
    """The overrides that seed a training run of policy `name`: its weight initialisation (the TLA's config
    keeps it under `model.`, the others at the top) and the trainer's data order."""
    return [f"model.seed={seed}" if name == "tla" else f"seed={seed}", f"train.seed={seed}"]


def policy_config(policy) -> dict | None:
    """The policy's resolved config as a dict (for the run's config.json)."""
    cfg = getattr(policy, "cfg", None) or getattr(policy, "config", None)
    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else None


def policy_dir(path: str | Path) -> Path:
    """The directory holding a saved policy: run/policy, else run/checkpoints/last/policy, else `path` itself
    (a checkpoint's policy/ or a bare policy dir)."""
    p = Path(path)
    for cand in (p / "policy", p / "checkpoints" / "last" / "policy"):
        if cand.is_dir():
            return cand
    if p.is_dir():
        return p
    raise FileNotFoundError(f"no saved policy under {p}")


def policy_name(path: str | Path) -> str:
    """The policy type, from the run's / checkpoint's config.json (trainer) or the policy's policy.json."""
    d = policy_dir(path)
    for f in (Path(path) / "config.json", d.parent / "config.json", d / "policy.json"):
        if f.exists():
            name = json.loads(f.read_text()).get("policy")
            if isinstance(name, str):
                return name
    raise FileNotFoundError(f"cannot tell the policy type of {path}: no config.json / policy.json naming it")


OBSERVATION_FILE = "observation.json"  # beside a saved policy: the spec and sim config it was trained on


def save_policy(policy, directory: str | Path) -> None:
    """`policy.save(directory)` plus what it was trained on (`observation.json`), so the folder is
    self-contained: evaluation and serving read the observation spec and the sensor from it."""
    policy.save(directory)
    write_trained_on(policy, directory)


def write_trained_on(policy, directory: str | Path) -> None:
    """`observation.json` (the spec and sim config the policy was trained on), if the policy knows them."""
    spec = getattr(policy, "observation_spec", None)
    if spec is not None:
        record = {"observation": spec.to_dict(), "sim_config": getattr(policy, "sim_config", None)}
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / OBSERVATION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def load_policy(run_dir: str | Path, decode: str | None = None, constrained: bool | None = None):
    """Load any registered policy from a run dir, a checkpoint dir or a policy dir. TLA runs only (inference
    settings: no retraining): `decode` acts by this `generate.decode` instead of the run's, `constrained`
    turns the grammar-constrained beam search (`generate.constrained`) on or off."""
    policy = policy_class(policy_name(run_dir)).load(policy_dir(run_dir))
    policy.observation_spec, policy.sim_config = trained_on(run_dir)
    model = getattr(policy, "model", None)
    if model is not None:  # inference mode, as from_pretrained gives: BC's batch norm would otherwise use and
        model.eval()       # update batch statistics in a user's own forward passes (the trainer sets train())
    for option, value in (("decode", decode), ("constrained", constrained)):
        if value is not None and getattr(policy, "name", "") != "tla":
            raise ValueError(f"{option}={value!r} applies to TLA runs only; {run_dir} is a {policy.name} run")
    if decode is not None:
        from tla.policies.tla.config import check_decode

        policy.cfg.generate.decode = check_decode(decode)
    if constrained is not None:
        policy.cfg.generate.constrained = bool(constrained)
    return policy


def trained_on(run_dir: str | Path):
    """(ObservationSpec, sim config dict) a saved policy records in `observation.json`, without loading its
    weights; (None, None) for policies saved by versions that did not record them."""
    from tla.sim.observation import ObservationSpec

    path = policy_dir(run_dir) / OBSERVATION_FILE
    if not path.exists():
        return None, None
    record = json.loads(path.read_text())
    return ObservationSpec.from_dict(record["observation"]), record.get("sim_config")


# --- Hugging Face folders of the regression baselines (BC, DP: `huggingface_hub.PyTorchModelHubMixin`) ---
HUB_CONFIG_FILE = "config.json"  # the mixin's config: {"policy", "cfg" (the policy config), "normalizer"}


def is_hub_folder(directory: str | Path) -> bool:
    """A `save_pretrained` folder (config.json, no policy.json) rather than a run's `save` folder."""
    d = Path(directory)
    return (d / HUB_CONFIG_FILE).is_file() and not (d / "policy.json").exists()


def save_pretrained(policy, net, directory: str | Path, cfg=None, extra: dict | None = None, **kwargs):
    """`net.save_pretrained` (weights + config.json + card) with the policy's name, config (`cfg`, default
    `policy.config`; `net.from_pretrained` rebuilds the net from it), action normaliser and `extra` in
    config.json, and observation.json beside; `kwargs` go to the mixin (push_to_hub, repo_id, ...)."""
    from tla.config import to_dict

    write_trained_on(policy, directory)  # first: a push_to_hub inside save_pretrained uploads it too
    config = {"policy": policy.name, "cfg": to_dict(cfg if cfg is not None else policy.config),
              "normalizer": policy.normalizer.to_dict(), **(extra or {})}
    return net.save_pretrained(directory, config=config, **kwargs)


def load_pretrained(net_cls, name: str, directory: str | Path, **kwargs):
    """(net, hub config dict, local folder) of a `save_pretrained` folder or Hub repo id holding a `name`
    policy; `kwargs` go to `net_cls.from_pretrained` (revision, token, ...)."""
    local = Path(directory)
    if not local.is_dir():  # a Hub repo id: fetch once, then read config.json and the weights locally
        from huggingface_hub import snapshot_download

        hub_kw = {k: v for k, v in kwargs.items() if k in ("revision", "token", "cache_dir")}
        local = Path(snapshot_download(str(directory), **hub_kw))
    config = json.loads((local / HUB_CONFIG_FILE).read_text())
    if config.get("policy") != name:
        raise ValueError(f"{directory} holds a {config.get('policy')!r} model, not {name!r}")
    kwargs.setdefault("strict", True)  # the mixin's default skips missing weights silently
    return net_cls.from_pretrained(local, **kwargs), config, local
