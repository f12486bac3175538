"""Export a TLA dataset split to a LeRobot v3.0 dataset root (one root per split: OUT/<split>/).

The layout follows LeRobot's own writer (lerobot/datasets/utils.py, io_utils.py, dataset_metadata.py,
dataset_writer.py, compute_stats.py, feature_utils.py at huggingface/lerobot, codebase_version "v3.0"):

    meta/info.json                            DatasetInfo: codebase_version, fps, features, counters, templates
    meta/stats.json                           flat {feature: {min, max, mean, std, count, q01..q99}}
    meta/tasks.parquet                        pandas frame: index `task` (the text), column `task_index`
    meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, data file, frame range, stats/*
    data/chunk-CCC/file-FFF.parquet           one row per frame, one row group per episode, <= 100 MB a file

A LeRobot frame is one TLA sample (one failed insertion attempt): 8 tactile images (left t0..t3, right
t0..t3) as `image` features, the pose error as `observation.environment_state` and the label as `action`.
A LeRobot episode is one TLA episode: the samples that share `episode_index` in attempt order, renumbered
0..E-1 in the order the source shards hold them. The task is the sample's instruction (one per peg shape).
The attempts are not on a clock, so fps is a nominal 1 and timestamp = frame_index.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tla.data import store
from tla.data.store import DatasetError

# LeRobot's constants (lerobot/datasets/utils.py, dataset_metadata.CODEBASE_VERSION)
CODEBASE_VERSION = "v3.0"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_EPISODES_PATH = "meta/episodes/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_TASKS_PATH = "meta/tasks.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
DEFAULT_CHUNK_SIZE = 1000  # files per chunk folder
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
DEFAULT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # compute_stats.DEFAULT_QUANTILES -> q01, q10, ...
# lerobot/utils/constants.DEFAULT_FEATURES: added after the dataset's own features
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

FPS = 1  # attempts have no fixed rate; LeRobot needs a positive integer
ROBOT_TYPE = "tla_tactile_peg_in_hole_sim"
IMAGE_KEYS = {col: f"observation.images.{col}" for col in store.FRAME_COLUMNS}  # left_t0 -> observation.images.left_t0
STATE_KEY = "observation.environment_state"


# ---------------------------------------------------------------- schema
def lerobot_features(height: int, width: int) -> dict[str, dict]:
    """info.json `features`: 8 images (H, W, 3), pose error (3,), action (3,), then LeRobot's defaults."""
    image = {"dtype": "image", "shape": [height, width, 3], "names": ["height", "width", "channels"]}
    feats = {key: dict(image) for key in IMAGE_KEYS.values()}
    feats[STATE_KEY] = {"dtype": "float32", "shape": [3], "names": ["ex_mm", "ey_mm", "erz_deg"]}
    feats["action"] = {"dtype": "float32", "shape": [3], "names": ["dx_mm", "dy_mm", "drz_deg"]}
    return {**feats, **DEFAULT_FEATURES}


def hf_features(features: dict[str, dict]):
    """The parquet schema LeRobot reads with (feature_utils.get_hf_features_from_features): `image` ->
    datasets.Image (struct {bytes, path}), shape (1,) -> Value, shape (n,) -> fixed-length Sequence."""
    import datasets

    out = {}
    for key, ft in features.items():
        if ft["dtype"] == "image":
            out[key] = datasets.Image()
        elif list(ft["shape"]) == [1]:
            out[key] = datasets.Value(ft["dtype"])
        else:
            out[key] = datasets.Sequence(length=ft["shape"][0], feature=datasets.Value(ft["dtype"]))
    return datasets.Features(out)


# ---------------------------------------------------------------- stats
def _quantile_keys() -> list[str]:
    return [f"q{int(q * 100):02d}" for q in DEFAULT_QUANTILES]


def vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's stats of a (N, D) or (N,) array over frames: each stat (D,) or (1,), count (1,).
    Fewer than 2 frames: quantiles = mean (compute_stats._compute_basic_stats)."""
    x = np.asarray(x, np.float64)
    x = x.reshape(len(x), -1)
    stats = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}
    for key, q in zip(_quantile_keys(), DEFAULT_QUANTILES):
        stats[key] = stats["mean"].copy() if len(x) < 2 else np.quantile(x, q, axis=0)
    return stats


def pixel_histogram(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (3, 256) counts of each value per channel."""
    flat = images.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.int64)


def image_stats(hist: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Per-channel stats of RGB pixels scaled to [0, 1], each of shape (3, 1, 1) as LeRobot stores image
    stats (compute_episode_stats: axes (0, 2, 3) kept, then / 255); count = frames, shape (1,).
    Exact: the pixel values are integers, so their (3, 256) histogram holds the whole distribution."""
    values = np.arange(256, dtype=np.float64) / 255.0
    n = hist.sum(1)
    mean = hist @ values / n
    std = np.sqrt(np.maximum(hist @ values**2 / n - mean**2, 0.0))
    present = hist > 0
    lo = np.array([values[np.argmax(p)] for p in present])
    hi = np.array([values[255 - np.argmax(p[::-1])] for p in present])
    cdf = np.cumsum(hist, 1) / n[:, None]
    stats = {"min": lo, "max": hi, "mean": mean, "std": std}
    for key, q in zip(_quantile_keys(), DEFAULT_QUANTILES):
        stats[key] = values[np.argmax(cdf >= q, axis=1)]  # the smallest value whose CDF reaches q
    stats = {k: v.reshape(3, 1, 1) for k, v in stats.items()}
    stats["count"] = np.array([frames])
    return stats


def _json_stats(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {k: {s: v.tolist() for s, v in ft.items()} for k, ft in stats.items()}


# ---------------------------------------------------------------- source
def _episodes_of_shard(root: Path, rel: str) -> list[pa.Table]:
    """One source shard's rows grouped by episode, each group in attempt order (an episode never spans
    shards: build.make_shard runs whole episodes inside one shard)."""
    cols = [*store.FRAME_COLUMNS, "instruction", "error", "action", "episode_index", "attempt_index"]
    t = pq.read_table(root / rel, columns=cols)
    order = np.lexsort((t.column("attempt_index").to_numpy(), t.column("episode_index").to_numpy()))
    t = t.take(pa.array(order))
    ep = t.column("episode_index").to_numpy()
    starts = np.concatenate(([0], np.nonzero(np.diff(ep))[0] + 1, [len(ep)]))
    return [t.slice(a, b - a) for a, b in itertools.pairwise(starts)]


def _decode_column(col: pa.ChunkedArray) -> np.ndarray:
    """An image column (struct {bytes, path}) -> (N, H, W, 3) uint8."""
    return np.stack([store.decode_image(b) for b in col.combine_chunks().field("bytes").to_pylist()])


class _DataWriter:
    """data/chunk-CCC/file-FFF.parquet: one row group per episode; a new file once the current one
    reaches data_files_size_in_mb (an episode is never split, as in LeRobot's dataset_writer)."""

    def __init__(self, out: Path, schema: pa.Schema, limit_mb: float):
        self.out, self.schema, self.limit = out, schema, limit_mb * 1024**2
        self.chunk = self.file = 0
        self.writer: pq.ParquetWriter | None = None
        self.bytes = 0

    def write(self, table: pa.Table) -> tuple[int, int]:
        """Append one episode; returns its (chunk_index, file_index)."""
        if self.writer is not None and self.bytes + table.nbytes > self.limit:
            self.close()
            self.chunk, self.file = ((self.chunk + 1, 0) if self.file == DEFAULT_CHUNK_SIZE - 1
                                     else (self.chunk, self.file + 1))
        if self.writer is None:
            path = self.out / DEFAULT_DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self.bytes = 0
        self.writer.write_table(table)
        self.bytes += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---------------------------------------------------------------- export
def export_split(root: str | Path, split: str, out: str | Path, limit: int | None = None,
                 data_file_size_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB) -> Path:
    """Write one split of the dataset in `root` as a LeRobot v3.0 dataset in `out` (must be empty or absent).
    `limit`: stop after the episode that reaches this many frames (quick looks, tests)."""
    root, out = Path(root), Path(out)
    info = store.load_info(root)
    files = store.verify_files(root, info, store.split_files(info, split))
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty; export into a fresh directory")
    features = lerobot_features(info["image"]["height"], info["image"]["width"])
    schema = hf_features(features).arrow_schema  # carries the `huggingface` features metadata LeRobot reads
    writer = _DataWriter(out, schema, data_file_size_mb)
    tasks: dict[str, int] = {}
    episodes: list[dict] = []
    hist_total = {key: np.zeros((3, 256), np.int64) for key in IMAGE_KEYS.values()}
    columns: dict[str, list] = {k: [] for k in (STATE_KEY, "action", "frame_index", "episode_index", "index",
                                                "task_index")}
    total = 0
    try:
        for rel in files:
            for ep in _episodes_of_shard(root, rel):
                if limit is not None and total >= limit:
                    break
                record, hists = _write_episode(ep, len(episodes), total, tasks, writer)
                episodes.append(record)
                for key, h in hists.items():
                    hist_total[key] += h
                n = record["length"]
                columns[STATE_KEY].append(np.asarray(ep.column("error").to_pylist(), np.float32))
                columns["action"].append(np.asarray(ep.column("action").to_pylist(), np.float32))
                columns["frame_index"].append(np.arange(n))
                columns["episode_index"].append(np.full(n, len(episodes) - 1))
                columns["index"].append(np.arange(total, total + n))
                columns["task_index"].append(np.full(n, record["_task_index"]))
                total += n
    finally:
        writer.close()
    if not episodes:
        raise DatasetError(f"split {split!r} of {root} has no samples to export")
    stats = {key: image_stats(h, total) for key, h in hist_total.items()}
    cat = {k: np.concatenate(v) for k, v in columns.items()}
    stats[STATE_KEY], stats["action"] = vector_stats(cat[STATE_KEY]), vector_stats(cat["action"])
    stats["timestamp"] = vector_stats(cat["frame_index"].astype(np.float32) / FPS)
    for k in ("frame_index", "episode_index", "index", "task_index"):
        stats[k] = vector_stats(cat[k])
    _write_meta(out, features, episodes, tasks, stats, total, data_file_size_mb)
    _write_card(out, root, split, info, len(episodes), total)
    return out


def _write_episode(ep: pa.Table, episode_index: int, first: int, tasks: dict[str, int],
                   writer: _DataWriter) -> tuple[dict, dict[str, np.ndarray]]:
    """Write one episode's frames; returns its meta/episodes row and its pixel histograms."""
    n = ep.num_rows
    texts = ep.column("instruction").to_pylist()
    if len(set(texts)) != 1:
        raise DatasetError(f"episode {ep.column('episode_index')[0]} mixes tasks {sorted(set(texts))}")
    task_index = tasks.setdefault(texts[0], len(tasks))  # LeRobot numbers tasks in order of appearance
    error = np.asarray(ep.column("error").to_pylist(), np.float32)
    action = np.asarray(ep.column("action").to_pylist(), np.float32)
    frame_index = np.arange(n, dtype=np.int64)
    cols = {IMAGE_KEYS[c]: ep.column(c) for c in store.FRAME_COLUMNS}  # the stored JPEG/PNG bytes, as is
    cols |= {
        STATE_KEY: pa.array(list(error), type=pa.list_(pa.float32(), 3)),
        "action": pa.array(list(action), type=pa.list_(pa.float32(), 3)),
        "timestamp": pa.array(frame_index.astype(np.float32) / FPS, pa.float32()),
        "frame_index": pa.array(frame_index),
        "episode_index": pa.array(np.full(n, episode_index, np.int64)),
        "index": pa.array(np.arange(first, first + n, dtype=np.int64)),
        "task_index": pa.array(np.full(n, task_index, np.int64)),
    }
    table = pa.Table.from_arrays([_as_array(cols[f.name], f.type) for f in writer.schema],
                                 schema=writer.schema)
    chunk, file = writer.write(table)
    hists = {IMAGE_KEYS[c]: pixel_histogram(_decode_column(ep.column(c))) for c in store.FRAME_COLUMNS}
    ep_stats = {key: image_stats(h, n) for key, h in hists.items()}
    ep_stats |= {STATE_KEY: vector_stats(error), "action": vector_stats(action),
                 "timestamp": vector_stats(frame_index / FPS), "frame_index": vector_stats(frame_index),
                 "episode_index": vector_stats(np.full(n, episode_index)),
                 "index": vector_stats(np.arange(first, first + n)),
                 "task_index": vector_stats(np.full(n, task_index))}
    # column order of LeRobotDatasetMetadata.save_episode: episode fields, data location, stats, meta location
    record = {"episode_index": episode_index, "tasks": [texts[0]], "length": n,
              "data/chunk_index": chunk, "data/file_index": file,
              "dataset_from_index": first, "dataset_to_index": first + n}
    for key, ft in ep_stats.items():
        for s, v in ft.items():
            record[f"stats/{key}/{s}"] = v.tolist()
    record |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "_task_index": task_index}
    return record, hists


def _as_array(col, type_: pa.DataType) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col.cast(type_) if col.type != type_ else col


def _write_meta(out: Path, features: dict, episodes: list[dict], tasks: dict[str, int], stats: dict,
                total: int, data_file_size_mb: float) -> None:
    """info.json, stats.json, tasks.parquet and the episodes parquet, as LeRobot writes them."""
    rows = [{k: v for k, v in ep.items() if not k.startswith("_")} for ep in episodes]
    path = out / DEFAULT_EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, compression="snappy")
    # io_utils.write_tasks: DataFrame indexed by the task text (index name "task"), column task_index
    frame = pd.DataFrame({"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task"))
    frame.to_parquet(out / DEFAULT_TASKS_PATH)
    info = {  # field order of lerobot.datasets.utils.DatasetInfo (tools omitted when unset, as to_dict does)
        "codebase_version": CODEBASE_VERSION,
        "fps": FPS,
        "features": features,
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": DEFAULT_CHUNK_SIZE,
        "data_files_size_in_mb": int(data_file_size_mb) if float(data_file_size_mb).is_integer() else data_file_size_mb,
        "video_files_size_in_mb": DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        "data_path": DEFAULT_DATA_PATH,
        "video_path": None,  # image features only: create_empty_dataset_info(use_videos=False) writes None
        "robot_type": ROBOT_TYPE,
        "splits": {"train": f"0:{len(episodes)}"},  # LeRobot's convention; the TLA split is the folder name
    }
    _write_json(out / INFO_PATH, info)
    _write_json(out / STATS_PATH, _json_stats(stats))


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False))  # lerobot.utils.io_utils.write_json


def _write_card(out: Path, root: Path, split: str, info: dict, episodes: int, frames: int) -> None:
    lines = store.card_header({"train": "data/*/*.parquet"}, ("LeRobot", *store.CARD_TAGS))
    lines += [f"# TLA tactile peg-in-hole: split `{split}` (LeRobot {CODEBASE_VERSION})", "",
              (f"{episodes} episodes, {frames} frames. A frame is one failed insertion attempt: 8 tactile "
               "images (left/right sensor, t0..t3), the pose error (`observation.environment_state`, mm, mm, deg) "
               "and the corrective action (`action`, mm, mm, deg); the task is the instruction for the peg shape. "
               f"fps is a nominal {FPS}: attempts are not on a clock."), "",
              (f"Exported by `tla data export --format lerobot` from a `{info.get('preset')}` build "
               f"(seed {info.get('seed')}, tla {store.tla_version(info)}, content hash "
               f"{str(info.get('content_hash'))[:16]})."), "",
              "```python", "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
              f'ds = LeRobotDataset("local/tla_{split}", root="{out.resolve()}")', "```", ""]
    (out / "README.md").write_text("\n".join(lines))


def export_lerobot(root: str | Path, out: str | Path, splits: list[str] | None = None,
                   limit: int | None = None) -> dict[str, Path]:
    """Every split (default: all) as its own LeRobot v3.0 root OUT/<split>; returns split -> root."""
    names = splits or list(store.load_info(root)["splits"])
    return {s: export_split(root, s, Path(out) / s, limit) for s in names}
