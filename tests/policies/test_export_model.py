"""`tla export-model` (a TLA run as a Hugging Face folder) and the BC / DP `PyTorchModelHubMixin` round trips.

Untrained tiny models are enough: the checks are equalities (same generated text, same actions), not skill.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tla.policies.base import make_batch
from tla.policies.registry import load_policy, save_policy
from tla.sim.observation import ObservationSpec

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/policies/conftest.py

SPEC = ObservationSpec(height=30, width=40, modality="marker_flow")
SHAPES = ["square", "hexagon"]
DATA = "/somewhere/tiny-peg-data"  # the dataset folder a run's config.json names (never read)
BASE_ID = "Qwen/Qwen2-VL-2B-Instruct"  # only written into a card; nothing is downloaded


def obs(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *SPEC.shape), dtype=np.uint8)


def tla_run(root, key, preset="tiny", overrides=(), lora_noise=False):
    """A TLA run as `tla reproduce` lays it out: root/runs/KEY/{config.json, policy/}. Untrained, but with
    its LoRA adapter and position table large enough to change the answers (both start near zero)."""
    from tla.policies.tla import TLAPolicy

    policy = TLAPolicy.build(preset, ["generate.max_new_tokens=6", *overrides])
    with torch.no_grad():
        for n, p in policy.model.named_parameters():
            if ("lora_B" in n and lora_noise) or n.endswith("position_table.weight"):
                p.normal_(0, 1.0)
    policy.observation_spec = SPEC
    run = root / "runs" / key
    save_policy(policy, run / "policy")
    (run / "config.json").write_text(json.dumps({"policy": "tla", "preset": preset, "data": DATA,
                                                 "split": "sp_train"}))
    return run, policy


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (the run's own policy, exported folder), over full / position table / merged LoRA / adapter."""
    from tla.policies.export import export_model
    from tla.policies.tla import TLAPolicy

    root = tmp_path_factory.mktemp("export")
    base = TLAPolicy.build("tiny", ["model.position_table=false"])  # a local "pretrained" base checkpoint
    base.model.save_pretrained(root / "base")
    base.tokenizer.save_pretrained(root / "base")
    runs = {
        "plain": tla_run(root, "plain", overrides=["model.position_table=false", "scale=[10.0, 10.0, 20.0]"]),
        "table": tla_run(root, "table"),
        "merged": tla_run(root, "merged", overrides=["model.train_mode=lora", "model.lora_rank=4"],
                          lora_noise=True),
        "adapter": tla_run(root, "adapter", "paper", [f"model.path={root / 'base'}", "composite_size=224",
                                                      "model.lora_rank=4"], lora_noise=True),
    }
    offline = root / "offline" / "table" / "sp_test"
    offline.mkdir(parents=True)
    (offline / "metrics.json").write_text(json.dumps({"gcr": 0.25, "l1_x_all": 0.5, "l1_x_gcr": float("nan"),
                                                      "policy": "tla", "split": "sp_test"}))
    out = {}
    for name, (run, policy) in runs.items():
        out[name] = (policy, export_model(run, root / "hf" / name, merge=name == "merged"))
    # the pretrained LoRA run merged too, its card naming the base's Hub id
    out["merged_base"] = (runs["adapter"][1], export_model(runs["adapter"][0], root / "hf" / "merged_base",
                                                            merge=True, base_model=BASE_ID))
    return out


# Runs in a fresh interpreter: transformers' Auto classes + the exported tokenizer and image processor;
# tla only for the composite image, the action parser and (where tla_config.json names one) the table.
RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from transformers import (AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer,
                              GenerationConfig)
    from tla.data.text import decode_action
    from tla.policies.export import composite_image

    torch.set_num_threads(1)
    folders, frames, shapes = json.loads(sys.argv[1]), np.load(sys.argv[2]), json.loads(sys.argv[3])
    results = {}
    for name, d in folders.items():
        t = json.load(open(f"{d}/tla_config.json"))
        model = AutoModelForImageTextToText.from_pretrained(d).eval()
        if t["position_table"] is not None and not name.endswith("-no-helper"):
            from tla.policies.export import load_position_table
            load_position_table(model, d)
        tok, ip = AutoTokenizer.from_pretrained(d), AutoImageProcessor.from_pretrained(d)
        gen = GenerationConfig.from_pretrained(d)
        texts, actions = [], []
        for o, shape in zip(frames, shapes):
            px = ip(images=[composite_image(o, d)], return_tensors="pt")
            msgs = [{"role": "user", "content": [{"type": "image"},
                     {"type": "text", "text": t["instruction_template"].format(shape=shape)}]}]
            prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            n = int(px["image_grid_thw"].prod()) // ip.merge_size ** 2
            enc = tok(prompt.replace("<|image_pad|>", "<|image_pad|>" * n), add_special_tokens=False,
                      return_tensors="pt")
            ids = enc["input_ids"]
            with torch.no_grad():
                out = model.generate(**enc, **px, mm_token_type_ids=(ids == model.config.image_token_id).long(),
                                     generation_config=gen)
            text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            a = decode_action(text, t["action_scale"])
            texts.append(text)
            actions.append(np.zeros(3).tolist() if a is None else np.asarray(a).tolist())
        results[name] = {"texts": texts, "actions": actions, "class": type(model).__name__,
                         "num_beams": model.generation_config.num_beams,
                         "tla_policy_imported": "tla.policies.tla.policy" in sys.modules}
    print("RESULTS" + json.dumps(results))
""")


def test_fresh_process_reload_gives_the_run_actions(exported, tmp_path):
    """Each exported folder, loaded by `AutoModelForImageTextToText.from_pretrained` in a new process with
    its own tokenizer + image processor + generation config, writes the run's texts and actions; the run
    without a position table needs no TLA model code at all (plain HF API)."""
    frames = obs(2, seed=5)
    np.save(tmp_path / "frames.npy", frames)
    folders = {name: str(d) for name, (_, d) in exported.items()}  # "plain" first: checked before any helper
    folders["table-no-helper"] = folders["table"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(folders), str(tmp_path / "frames.npy"),
                           json.dumps(SHAPES)], capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("RESULTS", 1)[1])
    for name, (policy, _) in exported.items():
        want = [policy.predict(make_batch(frames[i : i + 1], SHAPES[i : i + 1])) for i in range(len(frames))]
        got = results[name]
        assert got["texts"] == [w.texts[0] for w in want], name
        np.testing.assert_allclose(got["actions"], np.concatenate([w.actions for w in want]), err_msg=name)
    # without the helper the table run loads but is not the trained model (so the check above means something)
    assert results["table-no-helper"]["texts"] != results["table"]["texts"]
    # likewise the adapter: the base alone (the seeded tiny backbone the "pretrained" run started from) differs
    from tla.policies.tla import TLAPolicy

    base = TLAPolicy.build("tiny", ["model.position_table=false", "generate.max_new_tokens=6"])
    texts = [base.predict(make_batch(frames[i : i + 1], SHAPES[i : i + 1])).texts[0] for i in range(2)]
    assert texts != results["adapter"]["texts"]
    assert not results["plain"]["tla_policy_imported"]  # the table-free run loaded through plain HF only
    assert results["plain"]["num_beams"] == 3  # generation_config.json is picked up by from_pretrained
    assert results["adapter"]["class"].startswith("Qwen2VL")  # transformers loaded base + adapter (peft)


def test_folder_contents_and_tla_config(exported):
    for name, (policy, d) in exported.items():
        files = set(os.listdir(d))
        assert {"generation_config.json", "tokenizer_config.json", "preprocessor_config.json",
                "tla_config.json", "README.md", "chat_template.jinja"} <= files, name
        weights = {"adapter_config.json", "adapter_model.safetensors"} if name == "adapter" else {
            "config.json", "model.safetensors"}
        assert weights <= files and ("adapter_config.json" in files) == (name == "adapter"), name
        assert ("position_table.safetensors" in files) == (policy.position_table is not None), name
        t = json.loads((d / "tla_config.json").read_text())
        assert t["action_scale"] == list(policy.cfg.scale) and t["observation"] == SPEC.to_dict()
        assert t["composite_size"] == policy.cfg.composite_size and t["modality"] == policy.cfg.modality
    assert json.loads((exported["plain"][1] / "tla_config.json").read_text())["action_scale"] == [10, 10, 20]
    adapter = json.loads((exported["adapter"][1] / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == exported["adapter"][0].cfg.model.path


def test_model_card_metadata(exported):
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported["table"][1] / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "image-text-to-text"
    assert {"robotics", "tactile", "vla"} <= set(meta["tags"])
    assert meta["datasets"] == ["tiny-peg-data"] and "base_model" not in meta  # random-init tiny: no base
    # the offline metrics.json beside the run (tla reproduce layout); the NaN metric is left out
    assert meta["metrics"] == ["gcr", "l1_x_all"]
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"gcr": 0.25, "l1_x_all": 0.5} and card.data.eval_results[0].dataset_split == "sp_test"
    assert "load_position_table" in card.text  # the table's re-attachment is documented
    merged = ModelCard.load(exported["merged_base"][1] / "README.md").data.to_dict()
    assert merged["base_model"] == BASE_ID and merged["library_name"] == "transformers"
    adapter = ModelCard.load(exported["adapter"][1] / "README.md").data.to_dict()
    assert adapter["library_name"] == "peft" and "base_model" not in adapter  # a local path is no Hub id
    assert "load_position_table" not in ModelCard.load(exported["plain"][1] / "README.md").text


def test_user_errors(exported, tmp_path, monkeypatch, capsys):
    from tla.cli import main
    from tla.policies.bc import BCConfig, BCPolicy
    from tla.policies.export import export_model

    table_run = exported["table"][1].parent.parent / "runs" / "table"
    with pytest.raises(ValueError, match="no run at"):
        export_model(tmp_path / "missing", tmp_path / "a")
    save_policy(BCPolicy(BCConfig(image_size=(30, 40))), tmp_path / "bc" / "policy")
    with pytest.raises(ValueError, match="is a 'bc' run"):
        export_model(tmp_path / "bc", tmp_path / "b")
    with pytest.raises(ValueError, match="--merge needs a LoRA run"):
        export_model(table_run, tmp_path / "c", merge=True)
    with pytest.raises(ValueError, match="export it with --merge"):
        export_model(table_run.parent / "merged", tmp_path / "d")
    with pytest.raises(ValueError, match="not empty"):
        export_model(table_run, exported["table"][1])
    # the command line: one `error:` line, exit 2
    monkeypatch.setattr(sys, "argv", ["tla", "export-model", str(table_run), "--out", str(tmp_path / "e"),
                                      "--merge"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: --merge needs a LoRA run") and "\n" not in err


# --- BC / DP: PyTorchModelHubMixin ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bc", "dp"])
def test_hub_mixin_round_trip(kind, tmp_path):
    """save_pretrained -> from_pretrained gives the same config, normaliser, spec and identical actions;
    the folder also loads through the registry, and the run format (`save`/`load`) still works."""
    from scaffold import synthetic_items, train_steps

    if kind == "bc":
        from transformers import ResNetConfig, ResNetModel

        from tla.policies.bc import BCConfig as Config
        from tla.policies.bc import BCPolicy as Policy

        # a trunk from a local checkpoint: the published folder must not need it (it is deleted below)
        ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                 layer_type="basic")).save_pretrained(tmp_path / "rn")
        cfg = Config(image_size=(30, 40), embedding_size=8, hidden_sizes=(8, 8, 16, 16), head_hidden=32,
                     pretrained_dir=str(tmp_path / "rn"))
    else:
        from tla.policies.dp import DPConfig as Config
        from tla.policies.dp import DPPolicy as Policy

        cfg = Config(image_size=(30, 40), embedding_size=8, hidden_sizes=(8, 8, 16, 16), down_dims=(16, 32),
                     horizon=2, diffusion_step_embed_dim=16, n_groups=4, noise_samples=1)
    items = synthetic_items(8, hw=(30, 40))
    policy = Policy(cfg)
    policy.fit_normalizer(items)
    train_steps(policy, items, steps=3, batch_size=4)  # DP: the EMA weights now differ from the live ones
    policy.observation_spec = ObservationSpec(height=30, width=40)
    policy.save_pretrained(tmp_path / "hub")
    shutil.rmtree(tmp_path / "rn", ignore_errors=True)
    assert {"config.json", "model.safetensors", "README.md", "observation.json"} <= set(
        os.listdir(tmp_path / "hub"))
    loaded = Policy.from_pretrained(tmp_path / "hub")
    assert loaded.config == cfg and loaded.normalizer.to_dict() == policy.normalizer.to_dict()
    assert loaded.observation_spec == policy.observation_spec
    frames = np.stack([it["frames"] for it in items])
    batch = make_batch(frames, ["square"] * len(frames))
    want = policy.predict(batch).actions
    np.testing.assert_array_equal(loaded.predict(batch).actions, want)
    np.testing.assert_array_equal(load_policy(tmp_path / "hub").predict(batch).actions, want)
    save_policy(policy, tmp_path / "run" / "policy")  # the run format, unchanged
    np.testing.assert_array_equal(load_policy(tmp_path / "run").predict(batch).actions, want)
    # the bare network through the mixin alone: the published weights (DP: the EMA copy predict uses)
    published = (policy.ema.model if kind == "dp" else policy.model).state_dict()
    net = type(policy.model).from_pretrained(tmp_path / "hub").state_dict()
    assert net.keys() == published.keys() and all(torch.equal(net[k], published[k]) for k in net)
