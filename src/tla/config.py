"""Typed dataclass configs: presets, dotted command-line overrides, and JSON round trips.

Every job's config is a (nested) dataclass. `apply_overrides(cfg, ["render.height=120", "gel.E=0.3"])`
returns a new config; values are parsed with the field's declared type, and an unknown key is an error
that lists the valid ones. `to_dict` / `from_dict` give an exact JSON round trip, so a run directory's
`config.json` rebuilds the config that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# Command-line choices: typer lists them in --help and refuses anything else in one line. Each mirrors a
# registry (tests/test_cli_choices.py keeps them equal): policies, presets, modalities, export formats.
PolicyName = Literal["tla", "bc", "dp"]
TrainPresetName = Literal["tiny", "paper"]
ReproducePresetName = Literal["smoke", "tiny", "paper"]
DataPresetName = Literal["paper", "tiny", "smoke"]
ViewModality = Literal["rgb", "marker_flow", "depth", "all"]
ExportFormat = Literal["messages", "trl", "llamafactory", "lerobot"]
ExportStyle = Literal["llamafactory", "trl"]
Decode = Literal["top", "mean"]  # tla.policies.tla.config.DECODES


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and what is allowed."""


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (a JSON value or a command-line string) to the declared type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value)
    if origin is typing.Union or origin is types.UnionType:  # Optional[int] and int | None alike
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except (ConfigError, ValueError, TypeError):
                continue
        raise ConfigError(f"{key}: cannot read {value!r} as {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip() != ""]
        items = list(value)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(items)} ({value!r})")
            return tuple(_coerce(v, a, key) for v, a in zip(items, args))
        inner = args[0] if args else str
        out = [_coerce(v.strip() if isinstance(v, str) else v, inner, key) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    if tp is Any:
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from a dict; unknown keys are an error (a foreign or stale config)."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} for {cls.__name__}; valid keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(cfg: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of `cfg` with dotted `key=value` overrides applied (e.g. `gel.E=0.3`)."""
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"override {o!r} must look like key=value (e.g. render.height=120)")
            k, v = o.split("=", 1)
            items.append((k.strip().lstrip("-"), v.strip()))
    for key, value in items:
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def _set(cfg: Any, path: list[str], value: Any, full_key: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cfg)}
    head = path[0].replace("-", "_")
    if head not in names:
        raise ConfigError(f"unknown config key {full_key!r}; valid keys here: {sorted(names)}")
    hints = _field_types(type(cfg))
    if len(path) == 1:
        new = _coerce(value, hints[head], full_key)
    else:
        sub = getattr(cfg, head)
        if not dataclasses.is_dataclass(sub):
            raise ConfigError(f"{full_key!r}: {head} is not a section")
        new = _set(sub, path[1:], value, full_key)
    return dataclasses.replace(cfg, **{head: new})


def save_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))


def load_json(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, json.loads(Path(path).read_text()))
