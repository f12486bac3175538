"""What every run writes next to its outputs: resolved config, seed, versions, hardware."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import tla

_PACKAGES = ("numpy", "scipy", "shapely", "opencv-python-headless", "gymnasium", "torch", "transformers",
             "peft", "accelerate", "diffusers", "datasets")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "tla": tla.__version__}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_fields() -> dict[str, str]:
    """The first CPU's model name, family and model number (Linux /proc/cpuinfo); empty where unavailable.
    Hosts sold under one name ("AMD EPYC") differ in generation, and with it in vector instructions."""
    fields: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block
    except OSError:
        pass
    return fields


def describe_hardware(info: dict[str, Any]) -> str:
    """One line for reports: CPU model and count, GPUs, platform."""
    cpu = info.get("cpu") or info.get("machine")
    detail = ", ".join(x for x in (info.get("cpu_id"), info.get("cpu_capability")) if x)
    parts = [f"{info.get('cpu_count')} x {cpu}" + (f" ({detail})" if detail else "")]
    if info.get("gpu"):
        parts.append("GPU " + ", ".join(info["gpu"]))
    else:
        parts.append("no GPU")
    return "; ".join(parts) + f" ({info.get('platform')})"


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "machine": platform.machine()}
    cpu = _cpu_fields()
    if "model name" in cpu:
        info["cpu"] = cpu["model name"]
    if "cpu family" in cpu and "model" in cpu:
        info["cpu_id"] = f"family {cpu['cpu family']} model {cpu['model']}"
    try:
        import torch

        # the vector instructions torch's CPU kernels dispatch to (AVX2, AVX512, ...): the same seed and code
        # give bit-different trained weights on hosts where they differ
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def run_metadata(config: Any = None, seed: int | None = None, command: str | None = None) -> dict[str, Any]:
    cfg = asdict(config) if is_dataclass(config) else config
    return {
        "command": command or " ".join(sys.argv),
        "seed": seed,
        "config": cfg,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temp file and a rename: a kill leaves the old file or the new one,
    never a cut one (a resumed run reads it back)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_run_metadata(directory: str | Path, config: Any = None, seed: int | None = None, name: str = "run.json") -> Path:
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_metadata(config, seed), indent=2, default=str))
    return path
