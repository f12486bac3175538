"""`tla export-model`: a TLA run as a Hugging Face model folder that researchers can hand on.

The folder loads with `transformers.AutoModelForImageTextToText.from_pretrained(folder)` and holds:

- the weights: `config.json` + `model.safetensors` (full runs, or LoRA runs exported with `merge=True`,
  the adapter merged into the base), or `adapter_config.json` + `adapter_model.safetensors` naming the
  base checkpoint (LoRA runs without `merge`; transformers loads the base, then the adapter, through peft);
- `generation_config.json`: the run's decoding (beam search, max new tokens, end token), so a plain
  `model.generate(...)` gives the policy's top beam (a run with `generate.decode=mean` acts on the
  probability-weighted mean of all its beams' actions: `tla_config.json` says which, see
  `tla.policies.tla.policy.mean_action`);
- the tokenizer with the chat template, and the image processor (`preprocessor_config.json`);
- `tla_config.json`: what turns images into actions outside the model: action scale, prompt template,
  composite size, frame preprocessing, observation spec the run was trained on;
- `README.md`: a model card (YAML metadata via `huggingface_hub.ModelCard`).

The learned vision position table (`model.position_table`, on in the tiny preset) is not part of the
Qwen2-VL architecture, so a stock checkpoint cannot carry it. It is exported as `position_table.safetensors`
and re-attached by one call, `load_position_table(model, folder)`; without that call the model loads and
runs but sees no absolute positions, i.e. it is not the trained model. The model card says so.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

TLA_CONFIG_FILE = "tla_config.json"
FORMAT_VERSION = 1
CARD_TAGS = ["robotics", "tactile", "vla", "peg-in-hole", "qwen2-vl", "tla"]
# offline metrics (tla eval offline) worth a line in the card's model-index
CARD_METRICS = ("gcr", "one_step_insertion", "parse_failure_rate", "l1_x_all", "l1_y_all", "l1_rz_all",
                "direction_x", "direction_y", "direction_rz")


# --------------------------------------------------------------------------------------------- export
def export_model(run: str | Path, out: str | Path, merge: bool = False, *, base_model: str | None = None,
                 datasets: list[str] | None = None, metrics: list[str | Path] | None = None,
                 push_to_hub: str | None = None) -> Path:
    """Write TLA run `run` (a run, checkpoint or policy dir) as a Hugging Face model folder `out`.

    merge: fold a LoRA adapter into its base (peft `merge_and_unload`); only for LoRA runs.
    base_model: the base's Hub id for the card and the adapter reference (default: the run's model.path).
    datasets: dataset ids for the card (default: the name of the run's dataset folder).
    metrics: offline metrics.json files for the card (default: those found next to the run).
    push_to_hub: a repo id: upload the folder there (huggingface_hub; needs a token). Off by default.
    User errors (missing run, not a TLA run, merge on a full run, non-empty `out`) raise ValueError."""
    from tla.config import from_dict
    from tla.policies.tla.config import TLAConfig

    run, out = Path(run), Path(out)
    meta = _tla_policy_meta(run)
    cfg = from_dict(TLAConfig, meta["config"])
    lora = cfg.model.train_mode == "lora"
    _check_export(run, out, cfg, merge)
    base_ref = base_model or cfg.model.path

    from tla.policies.registry import load_policy

    policy = load_policy(run)
    table = _detach_position_table(policy)
    model = policy.model.merge_and_unload() if (lora and merge) else policy.model
    if lora and not merge and base_ref:
        model.peft_config["default"].base_model_name_or_path = base_ref
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # full: config + weights; peft: adapter_config + adapter weights
    _generation_config(policy).save_pretrained(out)
    policy.tokenizer.save_pretrained(out)  # carries the chat template the processor set
    policy.processor.image_processor.save_pretrained(out)
    if table is not None:
        from safetensors.torch import save_file

        from tla.policies.tla.policy import POSITION_TABLE_FILE

        save_file({"weight": table.weight.detach().cpu().contiguous()}, str(out / POSITION_TABLE_FILE))
    tla_config = _tla_config(policy, cfg, table, merged=lora and merge, base_ref=base_ref)
    (out / TLA_CONFIG_FILE).write_text(json.dumps(tla_config, indent=2, sort_keys=True))
    found = [Path(m) for m in metrics] if metrics is not None else find_metrics(run)
    model_card(run, out, tla_config, base_model, datasets, _read_metrics(found)).save(out / "README.md")
    if push_to_hub:
        upload(out, push_to_hub)
    return out


def _tla_policy_meta(run: Path) -> dict:
    """The run's policy.json, after checking `run` is a TLA run (ValueError otherwise)."""
    from tla.policies.registry import policy_dir, policy_name

    if not run.exists():
        raise ValueError(f"no run at {run}")
    try:
        name = policy_name(run)
    except FileNotFoundError:
        raise ValueError(f"{run} is not a training run (no config.json / policy.json naming a policy)") from None
    if name != "tla":
        raise ValueError(f"{run} is a {name!r} run; export-model exports TLA runs "
                         "(BC and DP publish with policy.save_pretrained(folder))")
    return json.loads((policy_dir(run) / "policy.json").read_text())


def _check_export(run: Path, out: Path, cfg, merge: bool) -> None:
    if cfg.layout != "composite":  # the card, tla_config and composite_image describe one composite image
        raise ValueError(f"{run} reads the {cfg.layout!r} layout; export-model writes runs that read the "
                         "composite layout (load this run with tla.policies.registry.load_policy instead)")
    if merge and cfg.model.train_mode != "lora":
        raise ValueError(f"--merge needs a LoRA run; {run} trained every weight (train_mode="
                         f"{cfg.model.train_mode}), so there is no adapter to merge")
    if cfg.model.train_mode == "lora" and not merge and cfg.model.preset == "tiny":
        raise ValueError(f"{run} is a LoRA run on the seeded random tiny backbone, which is no checkpoint "
                         "anyone can download as a base; export it with --merge")
    # a stale adapter_config.json beside new full weights would make transformers load the adapter
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; choose a new --out folder")


def _detach_position_table(policy):
    """Unregister the position table from the vision tower (so the saved checkpoint is a stock Qwen2-VL);
    returns it, or None when the run has none."""
    from tla.policies.tla.position import VISION_ATTR

    table = policy.position_table
    if table is not None:
        delattr(policy.adapter.vision_tower(policy.model), VISION_ATTR)
    return table


def _generation_config(policy):
    """The base's generation config with the policy's decoding on top (what `TLAPolicy.predict` uses)."""
    import copy

    g = policy.cfg.generate
    gen = copy.deepcopy(policy.model.generation_config)
    gen.update(num_beams=g.num_beams, max_new_tokens=g.max_new_tokens, do_sample=False,
               early_stopping=g.num_beams > 1, pad_token_id=policy.processor.pad_id,
               eos_token_id=policy.processor.end_id)
    return gen


def _tla_config(policy, cfg, table, merged: bool, base_ref: str | None) -> dict:
    """tla_config.json: what turns an observation into the model's input and its answer into an action."""
    from tla.config import to_dict
    from tla.data.text import INSTRUCTION_TEMPLATE
    from tla.policies.tla.policy import POSITION_TABLE_FILE

    spec = policy.observation_spec
    return {
        "format_version": FORMAT_VERSION,
        "policy": "tla",
        "action_scale": list(cfg.scale),
        "action_format": "[round(dx_mm * s0), round(dy_mm * s1), round(drz_deg * s2)]",
        "instruction_template": INSTRUCTION_TEMPLATE,
        "layout": cfg.layout,
        "composite_size": cfg.composite_size,
        "modality": cfg.modality,
        "preprocess": to_dict(cfg.preprocess),
        "decode": cfg.generate.decode,
        "observation": spec.to_dict() if spec is not None else None,
        "sim_config": policy.sim_config,
        "train_mode": cfg.model.train_mode,
        "merged": merged,
        "base_model": None if (cfg.model.train_mode == "full" and cfg.model.preset == "tiny") else base_ref,
        "position_table": None if table is None else {
            "file": POSITION_TABLE_FILE, "grid": [table.grid_h, table.grid_w], "merge": table.merge},
        "tla_config": to_dict(cfg),
    }


# ---------------------------------------------------------------------------------- helpers for users
def load_position_table(model, directory: str | Path):
    """Re-attach an exported run's vision position table to `model` (loaded from `directory`); a no-op for
    runs without one. `model = load_position_table(AutoModelForImageTextToText.from_pretrained(d), d)`."""
    import torch
    from safetensors.torch import load_file

    from tla.policies.tla.position import attach_position_table

    d = Path(directory)
    spec = json.loads((d / TLA_CONFIG_FILE).read_text())["position_table"]
    if spec is None:
        return model
    table = attach_position_table(model, *spec["grid"], merge=spec["merge"])
    with torch.no_grad():
        table.weight.copy_(load_file(str(d / spec["file"]))["weight"])
    return model


def composite_image(observation, directory: str | Path) -> np.ndarray:
    """One observation (8, H, W, 3) uint8 -> the composite image (uint8) the exported model reads, with
    the run's frame preprocessing and composite size from `tla_config.json`."""
    from tla.config import from_dict
    from tla.policies.preprocess import FramePreprocess, preprocess_frames
    from tla.sim.compose import make_composite

    tcfg = json.loads((Path(directory) / TLA_CONFIG_FILE).read_text())
    frames = preprocess_frames(np.asarray(observation), from_dict(FramePreprocess, tcfg["preprocess"]))
    return make_composite(frames, tcfg["composite_size"])


# ----------------------------------------------------------------------------------------- model card
def find_metrics(run: Path) -> list[Path]:
    """Offline metrics of `run`: run/metrics.json, run/offline/**/metrics.json, and the layout of
    `tla reproduce` / `tla ablate` (OUT/runs/KEY beside OUT/offline/KEY[/split]/metrics.json)."""
    run = Path(run)
    cands = [run / "metrics.json", *sorted((run / "offline").glob("**/metrics.json"))]
    if run.parent.name == "runs":
        cands += sorted((run.parent.parent / "offline" / run.name).glob("**/metrics.json"))
    return [c for c in cands if c.is_file()]


def _read_metrics(files: list[Path]) -> list[dict]:
    """The readable metrics.json files as {"split", "data", "values"} (finite card metrics only)."""
    rows = []
    for f in files:
        try:
            m = json.loads(Path(f).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read metrics file {f}: {e}") from None
        values = {k: float(m[k]) for k in CARD_METRICS
                  if isinstance(m.get(k), (int, float)) and math.isfinite(m[k])}
        rows.append({"split": m.get("split") or Path(f).parent.name, "data": m.get("data"), "values": values})
    return rows


def _run_config(run: Path) -> dict:
    from tla.policies.registry import policy_dir

    for f in (run / "config.json", policy_dir(run).parent / "config.json"):
        if f.is_file():
            return json.loads(f.read_text())
    return {}


def _dataset_ids(run: Path, datasets: list[str] | None) -> list[str]:
    if datasets:
        return list(datasets)
    data = _run_config(run).get("data")
    return [Path(data).name] if data else []


def _hub_id(ref: str | None) -> str | None:
    """`ref` if it reads as a Hub repo id (owner/name, not a local folder), else None: card metadata
    must not name a path on the exporting machine."""
    if ref and re.fullmatch(r"[\w.-]+/[\w.-]+", ref) and not Path(ref).exists():
        return ref
    return None


def model_card(run: Path, out: Path, tla_config: dict, base_model: str | None, datasets: list[str] | None,
               metric_rows: list[dict]):
    """The model card: YAML metadata (huggingface_hub.ModelCardData) + a short usage text."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    ds = _dataset_ids(run, datasets)
    results = [
        EvalResult(task_type="robotics", task_name="tactile peg-in-hole correction",
                   dataset_type=ds[0] if ds else "tactile-peg-in-hole", dataset_name=ds[0] if ds else "tactile",
                   dataset_split=row["split"], metric_type=k, metric_name=k, metric_value=v)
        for row in metric_rows for k, v in row["values"].items()
    ]
    adapter = tla_config["train_mode"] == "lora" and not tla_config["merged"]
    data = ModelCardData(
        base_model=_hub_id(base_model or tla_config["base_model"]),
        datasets=ds or None,
        license="apache-2.0",
        library_name="peft" if adapter else "transformers",
        pipeline_tag="image-text-to-text",
        tags=CARD_TAGS,
        metrics=sorted({k for row in metric_rows for k in row["values"]}) or None,
        model_name=out.name,
        eval_results=results or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_card_body(out.name, tla_config, metric_rows)}")


def _card_body(name: str, t: dict, metric_rows: list[dict]) -> str:
    table = t["position_table"]
    weights = ("a LoRA adapter on `" + str(t["base_model"]) + "` (transformers loads the base, then the "
               "adapter, through peft)") if t["train_mode"] == "lora" and not t["merged"] else (
        "full Qwen2-VL weights" + (" (LoRA adapter merged into the base)" if t["merged"] else ""))
    lines = [
        f"# {name}",
        "",
        ("A TLA tactile policy for peg-in-hole insertion: a Qwen2-VL model that reads a 3x3 composite of 8 "
         "tactile frames (left and right gel pads, 4 time steps) and answers the corrective action as text "
         f"`[dx, dy, drz]`, integers = round(dx mm, dy mm, drz deg x scale {t['action_scale']})."),
        "",
        (f"Weights: {weights}. Decoding: `generation_config.json` (the run's beam search; action = "
         + ("the top beam's" if t["decode"] == "top" else
            "the probability-weighted mean of all returned beams' actions, `num_return_sequences=num_beams`")
         + f"). Input: modality "
         f"`{t['modality']}`, composite {t['composite_size']} px; `tla_config.json` holds the prompt "
         "template, frame preprocessing, observation spec and action scale."),
        "",
    ]
    if table is not None:
        lines += [
            ("**Position table.** This run adds a learned absolute position table to the vision tower's patch "
             "embeddings, which stock Qwen2-VL does not have. It is stored in "
             f"`{table['file']}`; re-attach it after loading, or the model is not the trained one:"),
            "",
            "```python",
            "from tla.policies.export import load_position_table",
            "model = load_position_table(AutoModelForImageTextToText.from_pretrained(folder), folder)",
            "```",
            "",
        ]
    lines += [
        "## Usage",
        "",
        "```python",
        "import json, torch",
        "from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer",
        "from tla.data.text import decode_action",
        "from tla.policies.export import composite_image",
        "",
        "model = AutoModelForImageTextToText.from_pretrained(folder)"
        + ("  # then load_position_table(model, folder)" if table is not None else ""),
        "tok, ip = AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)",
        "t = json.load(open(f'{folder}/tla_config.json'))",
        "image = composite_image(frames, folder)  # frames: uint8 (8, H, W, 3)",
        "px = ip(images=[image], return_tensors='pt')",
        "px['pixel_values'] = px['pixel_values'].to(model.dtype)  # bf16 checkpoints",
        "msgs = [{'role': 'user', 'content': [{'type': 'image'},",
        "         {'type': 'text', 'text': t['instruction_template'].format(shape='square')}]}]",
        "prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)",
        "n = int(px['image_grid_thw'].prod()) // ip.merge_size ** 2",
        "enc = tok(prompt.replace('<|image_pad|>', '<|image_pad|>' * n), add_special_tokens=False, return_tensors='pt')",
        "ids = enc['input_ids']",
        "out = model.generate(**enc, **px, mm_token_type_ids=(ids == model.config.image_token_id).long())",
        "text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)",
        "action = decode_action(text, t['action_scale'])  # (dx mm, dy mm, drz deg)",
        "```",
        "",
    ]
    if metric_rows:
        keys = sorted({k for row in metric_rows for k in row["values"]})
        lines += ["## Offline metrics", "", "| split | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 1) + "|"]
        lines += ["| " + str(row["split"]) + " | " + " | ".join(
            f"{row['values'][k]:.4g}" if k in row["values"] else "" for k in keys) + " |" for row in metric_rows]
        lines.append("")
    return "\n".join(lines)


def upload(folder: Path, repo_id: str) -> str:
    """Create (if needed) and upload to Hub repo `repo_id`; only called when the user asks to push."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True, repo_type="model")
    return str(api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model"))
