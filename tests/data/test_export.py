"""Dataset exports: LeRobot v3.0 (layout and contents), TRL and LLaMA-Factory chat folders used from another
working directory, the `messages` JSONL, the TRL example, and `tla_version` in meta/info.json."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from tla.data import lerobot, store
from tla.data.dataset import TactileDataset
from tla.data.text import instruction

REPO = Path(__file__).resolve().parents[2]
# lerobot.datasets.utils.DatasetInfo fields (`tools` is dropped by to_dict when unset)
INFO_KEYS = {"codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks", "chunks_size",
             "data_files_size_in_mb", "video_files_size_in_mb", "data_path", "video_path", "robot_type", "splits"}
STAT_KEYS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
DEFAULT_KEYS = ["timestamp", "frame_index", "episode_index", "index", "task_index"]


def card_yaml(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def source_episodes(root: Path, split: str) -> list[dict]:
    """The split's samples grouped into episodes (source shard order, attempts in order)."""
    info = store.load_info(root)
    out = []
    for rel in store.split_files(info, split):
        s = store.read_scalars(root, [rel])
        order = np.lexsort((s["attempt_index"], s["episode_index"]))
        for ep in dict.fromkeys(s["episode_index"][order]):
            rows = order[s["episode_index"][order] == ep]
            out.append({"rows": [(rel, int(r)) for r in rows], "action": s["action"][rows],
                        "error": s["error"][rows], "instruction": str(s["instruction"][rows[0]])})
    return out


@pytest.fixture(scope="module")
def lerobot_export(smoke_ds, tmp_path_factory):
    root, _ = smoke_ds
    out = tmp_path_factory.mktemp("lerobot")
    return root, lerobot.export_lerobot(root, out, ["sp_train", "mp_train"])


# ---------------------------------------------------------------- LeRobot v3.0
def test_lerobot_info_and_features(lerobot_export):
    root, roots = lerobot_export
    src = store.load_info(root)
    for split, out in roots.items():
        info = json.loads((out / "meta" / "info.json").read_text())
        assert set(info) == INFO_KEYS
        assert info["codebase_version"] == "v3.0"
        assert isinstance(info["fps"], int) and info["fps"] > 0
        assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        assert info["video_path"] is None  # image features, no videos (create_empty_dataset_info use_videos=False)
        assert info["chunks_size"] == 1000 and info["data_files_size_in_mb"] == 100
        assert info["robot_type"]
        assert info["total_frames"] == src["splits"][split]["samples"]
        assert info["total_episodes"] == len(source_episodes(root, split)) == src["splits"][split]["episodes"]
        assert info["total_tasks"] == len(src["splits"][split]["shapes"])
        assert info["splits"] == {"train": f"0:{info['total_episodes']}"}
        feats = info["features"]
        h, w = src["image"]["height"], src["image"]["width"]
        images = [f"observation.images.{c}" for c in store.FRAME_COLUMNS]
        assert list(feats) == [*images, "observation.environment_state", "action", *DEFAULT_KEYS]
        for key in images:
            assert feats[key] == {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
        for key in ("observation.environment_state", "action"):
            assert feats[key]["dtype"] == "float32" and feats[key]["shape"] == [3] and len(feats[key]["names"]) == 3
        for key in DEFAULT_KEYS:
            assert feats[key]["shape"] == [1] and feats[key]["names"] is None
        assert feats["timestamp"]["dtype"] == "float32" and feats["index"]["dtype"] == "int64"
        assert card_yaml(out / "README.md")["task_categories"] == ["robotics"]


def test_lerobot_episodes_tasks_and_frames(lerobot_export):
    root, roots = lerobot_export
    for split, out in roots.items():
        info = json.loads((out / "meta" / "info.json").read_text())
        tasks = pd.read_parquet(out / "meta" / "tasks.parquet")  # as lerobot io_utils.load_tasks
        assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
        assert tasks["task_index"].tolist() == list(range(info["total_tasks"]))
        assert set(tasks.index) == {instruction(s) for s in store.load_info(root)["splits"][split]["shapes"]}

        eps = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
        assert [e["episode_index"] for e in eps] == list(range(info["total_episodes"]))  # contiguous
        assert eps[0]["dataset_from_index"] == 0 and eps[-1]["dataset_to_index"] == info["total_frames"]
        for a, b in itertools.pairwise(eps):
            assert a["dataset_to_index"] == b["dataset_from_index"]
        for e in eps:
            assert e["length"] == e["dataset_to_index"] - e["dataset_from_index"] >= 1
            assert len(e["tasks"]) == 1 and e["meta/episodes/chunk_index"] == e["meta/episodes/file_index"] == 0
            assert {k.split("/")[1] for k in e if k.startswith("stats/")} == set(info["features"])

        data = pq.read_table(out / info["data_path"].format(chunk_index=0, file_index=0))
        assert data.column_names == list(info["features"])
        cols = {c: data.column(c).to_pylist() for c in DEFAULT_KEYS}
        assert cols["index"] == list(range(info["total_frames"]))
        for e, src_ep in zip(eps, source_episodes(root, split), strict=True):  # episode = source episode, in order
            sl = slice(e["dataset_from_index"], e["dataset_to_index"])
            assert cols["episode_index"][sl] == [e["episode_index"]] * e["length"]
            assert cols["frame_index"][sl] == list(range(e["length"]))
            assert cols["timestamp"][sl] == [float(i) / info["fps"] for i in range(e["length"])]
            assert {tasks.index[t] for t in cols["task_index"][sl]} == {src_ep["instruction"]} == set(e["tasks"])
            np.testing.assert_array_equal(data.column("action").to_pylist()[sl], src_ep["action"].astype(np.float32))
            np.testing.assert_array_equal(data.column("observation.environment_state").to_pylist()[sl],
                                          src_ep["error"].astype(np.float32))
        # one parquet row group per episode, as LeRobot's writer
        assert pq.ParquetFile(out / "data" / "chunk-000" / "file-000.parquet").num_row_groups == len(eps)


def test_lerobot_stats_layout(lerobot_export):
    _, roots = lerobot_export
    out = roots["mp_train"]
    info = json.loads((out / "meta" / "info.json").read_text())
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert set(stats) == set(info["features"])  # flat: one entry per feature, LeRobot's defaults included
    for key, ft in stats.items():
        assert set(ft) == STAT_KEYS
        assert ft["count"] == [info["total_frames"]]
        shape = (3, 1, 1) if info["features"][key]["dtype"] == "image" else tuple(info["features"][key]["shape"])
        for s in STAT_KEYS - {"count"}:
            assert np.asarray(ft[s]).shape == shape, (key, s)
        if shape == (3, 1, 1):  # RGB scaled to [0, 1]
            assert 0 <= np.min(ft["min"]) <= np.max(ft["max"]) <= 1
            assert np.all(np.asarray(ft["q01"]) <= np.asarray(ft["q99"]))
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    action = np.asarray(data.column("action").to_pylist(), np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], action.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action"]["q50"], np.quantile(action, 0.5, axis=0), rtol=1e-6)
    # image mean = the pixel mean / 255 over every frame
    img = np.stack([np.asarray(Image.open(io.BytesIO(b["bytes"])))
                    for b in data.column("observation.images.right_t2").to_pylist()])
    np.testing.assert_allclose(np.asarray(stats["observation.images.right_t2"]["mean"]).ravel(),
                               img.reshape(-1, 3).mean(0) / 255, rtol=1e-9)


def test_lerobot_images_round_trip(lerobot_export, tmp_path):
    """LeRobot's reader (datasets + its features) gives the dataset's frames back, byte for byte."""
    import datasets

    root, roots = lerobot_export
    out = roots["sp_train"]
    info = json.loads((out / "meta" / "info.json").read_text())
    feats = lerobot.hf_features(info["features"])
    files = sorted(str(p) for p in (out / "data").glob("*/*.parquet"))  # load_nested_dataset's glob
    hf = datasets.Dataset.from_parquet(files, features=feats, cache_dir=str(tmp_path))
    assert hf.features == feats
    ds = TactileDataset(root, "sp_train")
    order = [r for ep in source_episodes(root, "sp_train") for r in ep["rows"]]
    files_src = store.split_files(store.load_info(root), "sp_train")
    for k in (0, 5, len(hf) - 1):
        rel, row = order[k]
        i = sum(store.shard_rows(root / f) for f in files_src[: files_src.index(rel)]) + row
        item = hf[k]
        for j, col in enumerate(store.FRAME_COLUMNS):
            np.testing.assert_array_equal(np.asarray(item[f"observation.images.{col}"]), ds.frames(i)[j])
        np.testing.assert_array_equal(item["action"], ds[i]["action"])


def test_lerobot_data_files_roll_over(smoke_ds, tmp_path):
    """A small size limit gives several data files; each episode lives in the file its metadata names."""
    root, _ = smoke_ds
    out = lerobot.export_split(root, "sp_train", tmp_path / "lr", data_file_size_mb=0.05)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["data_files_size_in_mb"] == 0.05
    eps = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert len({e["data/file_index"] for e in eps}) > 1
    for e in eps:
        t = pq.read_table(out / info["data_path"].format(chunk_index=e["data/chunk_index"],
                                                         file_index=e["data/file_index"]),
                          columns=["episode_index", "index"])
        idx = [i for i, ep in zip(t.column("index").to_pylist(), t.column("episode_index").to_pylist())
               if ep == e["episode_index"]]
        assert idx == list(range(e["dataset_from_index"], e["dataset_to_index"]))


def test_lerobot_errors(smoke_ds, tmp_path):
    root, _ = smoke_ds
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(store.DatasetError, match="not empty"):
        lerobot.export_split(root, "sp_test", tmp_path / "full")
    with pytest.raises(store.DatasetError, match="not in this dataset"):
        lerobot.export_split(root, "nope", tmp_path / "new")


def test_cli_export(smoke_ds, tmp_path):
    from typer.testing import CliRunner

    from tla.data.cli import app

    root, _ = smoke_ds
    r = CliRunner().invoke(app, ["export", str(root), "--out", str(tmp_path / "lr"), "--format", "lerobot",
                                 "--split", "sp_test", "--limit", "3"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "lr" / "sp_test" / "meta" / "info.json").read_text())
    assert 3 <= info["total_frames"] <= 3 + 3  # stops after the episode that reaches the limit
    r = CliRunner().invoke(app, ["export", str(root), "--out", str(tmp_path / "x"), "--format", "csv"])
    words = " ".join(r.output.replace("│", " ").split())  # typer's error box, unwrapped
    assert r.exit_code == 2 and "'csv' is not one of 'messages', 'trl', 'llamafactory', 'lerobot'" in words


# ---------------------------------------------------------------- chat exports
def test_trl_export_loads_from_another_cwd(smoke_ds, tmp_path, monkeypatch):
    import datasets

    from tla.data.chat import export_trl

    root, _ = smoke_ds
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    export_trl(root, "trl", ["sp_train", "mp_train"], composite_size=224, limit=4)  # a relative OUT
    monkeypatch.chdir(tmp_path / "b")
    out = tmp_path / "a" / "trl"
    card = card_yaml(out / "README.md")
    assert card["license"] == "apache-2.0" and card["task_categories"] == ["robotics"] and "tactile" in card["tags"]
    ds = TactileDataset(root, "mp_train", composite_size=224)
    hf = datasets.load_dataset(str(out), split="mp_train", cache_dir=str(tmp_path / "cache"))
    assert len(hf) == 4
    assert isinstance(hf.features["images"].feature, datasets.Image)
    for i, row in enumerate(hf):
        item = ds[i]
        assert row["prompt"] == [{"role": "user", "content": item["instruction"]}]
        assert row["completion"] == [{"role": "assistant", "content": item["answer"]}]
        assert len(row["images"]) == 1 and isinstance(row["images"][0], Image.Image)
        np.testing.assert_array_equal(np.asarray(row["images"][0]), item["composite"])  # PNG: lossless
    raw = pq.read_table(out / "data" / "mp_train-00000.parquet").column("images").to_pylist()
    assert all(im["bytes"] and im["path"] is None for r in raw for im in r)  # embedded, no paths


def test_llamafactory_export_resolves_from_another_cwd(smoke_ds, tmp_path, monkeypatch):
    from tla.data.chat import export_llamafactory

    root, _ = smoke_ds
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    export_llamafactory(root, "lf", ["sp_train", "sp_test"], limit=3)
    monkeypatch.chdir(tmp_path / "b")
    out = tmp_path / "a" / "lf"
    assert sorted(p.name for p in out.glob("*.yaml")) == ["train_sp_train.yaml"]
    cfg = yaml.safe_load((out / "train_sp_train.yaml").read_text())
    assert cfg["model_name_or_path"] == "Qwen/Qwen2-VL-7B-Instruct" and cfg["template"] == "qwen2_vl"
    assert cfg["stage"] == "sft" and cfg["finetuning_type"] == "lora" and cfg["lora_target"] == "all"
    assert cfg["freeze_vision_tower"] is True and cfg["bf16"] is True
    assert cfg["learning_rate"] == 1e-4 and cfg["num_train_epochs"] == 20
    assert cfg["image_max_pixels"] >= 616 * 616 and cfg["cutoff_len"] >= (616 // 28) ** 2 + 100
    assert Path(cfg["dataset_dir"]).is_absolute() and Path(cfg["dataset_dir"]) == out.resolve()
    info = json.loads((Path(cfg["dataset_dir"]) / "dataset_info.json").read_text())
    entry = info[cfg["dataset"]]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"] == {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}
    ds = TactileDataset(root, "sp_train", composite_size=616)
    lines = (Path(cfg["dataset_dir"]) / entry["file_name"]).read_text().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        row = json.loads(line)
        user, assistant = row["messages"]
        assert user["content"].count("<image>") == len(row["images"]) == 1
        assert assistant["content"] == ds[i]["answer"]
        # LLaMA-Factory's converter._find_medias: os.path.join(media_dir, path) when that is a file
        path = os.path.join(cfg["media_dir"], row["images"][0])
        assert os.path.isfile(path)
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), ds[i]["composite"])
    assert card_yaml(out / "README.md")["license"] == "apache-2.0"


def test_messages_export_styles(smoke_ds, tmp_path):
    from tla.data.export import export_messages

    root, _ = smoke_ds
    for style in ("llamafactory", "trl"):
        written = export_messages(root, tmp_path / style, ["sp_test"], 224, style, limit=2)
        rows = [json.loads(x) for x in written["sp_test"].read_text().splitlines()]
        assert len(rows) == 2 and all((tmp_path / style / r["images"][0]).is_file() for r in rows)
    assert (tmp_path / "llamafactory" / "dataset_info.json").exists()
    with pytest.raises(ValueError, match="unknown export style"):
        export_messages(root, tmp_path / "x", ["sp_test"], 224, "alpaca", limit=1)


@pytest.mark.slow
def test_trl_sft_example_runs(smoke_ds, tmp_path):
    """examples/trl_sft.py: 2 SFTTrainer steps of the tiny TLA on a TRL export, from another cwd."""
    try:
        import trl  # noqa: F401
    except ImportError:
        print("skipping: trl is not installed (pip install 'tla[trl]')")
        pytest.skip("trl is not installed (pip install 'tla[trl]')")
    from tla.data.chat import export_trl

    root, _ = smoke_ds
    export_trl(root, tmp_path / "trl", ["sp_train"], composite_size=224, limit=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "examples" / "trl_sft.py"), str(tmp_path / "trl"),
                        "--split", "sp_train", "--steps", "2", "--out", str(tmp_path / "run")],
                       check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "trained 2 steps" in r.stdout


# ---------------------------------------------------------------- tla_version
def test_info_records_tla_version(smoke_ds):
    import tla

    root, info = smoke_ds
    assert info["tla_version"] == tla.__version__ and "codebase_version" not in info
    on_disk = json.loads((root / "meta" / "info.json").read_text())
    assert on_disk["tla_version"] == tla.__version__ and "codebase_version" not in on_disk
    assert "codebase_version" not in json.loads((root / "meta" / "build.json").read_text())
    card = card_yaml(root / "README.md")
    assert card["license"] == "apache-2.0" and card["task_categories"] == ["robotics"] and card["tags"]


def test_old_codebase_version_key_still_loads(smoke_ds, smoke_cfg, tmp_path):
    """A dataset built before the rename (`codebase_version` = package version) loads and resumes."""
    from tla.data.build import build

    root, _ = smoke_ds
    old = tmp_path / "old"
    shutil.copytree(root, old)
    for name in ("info.json", "build.json"):
        path = old / "meta" / name
        meta = json.loads(path.read_text())
        meta["codebase_version"] = meta.pop("tla_version")
        path.write_text(json.dumps(meta))
    info = store.load_info(old)
    assert info["tla_version"] == info["codebase_version"] == store.tla_version(info)
    assert len(TactileDataset(old, "sp_test")) == info["splits"]["sp_test"]["samples"]
    assert build(smoke_cfg, old, progress=False)["content_hash"] == info["content_hash"]  # same build
