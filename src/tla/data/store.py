"""On-disk layout of a tactile dataset (LeRobot-v3-like) and its checks.

    DIR/meta/build.json                         build plan: data config + resolved sim config (written first)
    DIR/meta/info.json                          written last, when every shard is there: configs, package
                                                version (`tla_version`), seed, counts, schema, file hashes
    DIR/meta/stats.json                         action / error statistics per split
    DIR/data/<split>/chunk-000/file-000.parquet shards written with HF `datasets` (images as `Image`)

A directory without meta/info.json is an unfinished build; every reader raises `DatasetError` naming the
file at fault and the command that fixes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import cv2
import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT = "tla-tactile-dataset"
FORMAT_VERSION = 1
FRAME_COLUMNS = tuple(f"{pad}_t{t}" for pad in ("left", "right") for t in range(4))  # = frame order
DATA_PATH = "data/{split}/chunk-{chunk:03d}/file-{file:03d}.parquet"
FILES_PER_CHUNK = 1000

FIELD_COLUMNS = ("marker_flow", "depth")  # optional: dense sensor fields (tla.sim.modality), float16, flat


def features(fields: tuple[str, ...] = ()) -> datasets.Features:
    """The shard schema: 8 image columns, the scalar columns, and the stored field columns (row-major
    float16 values of the (8, gh, gw[, 2]) grid whose shape meta/info.json records under `fields`)."""
    unknown = set(fields) - set(FIELD_COLUMNS)
    if unknown:
        raise DatasetError(f"unknown field column(s) {sorted(unknown)}; stored fields can be {FIELD_COLUMNS}")
    return datasets.Features(
        {
            **{c: datasets.Image() for c in FRAME_COLUMNS},
            "shape": datasets.Value("string"),
            "clearance": datasets.Value("float64"),
            "error": datasets.List(datasets.Value("float64"), length=3),
            "action": datasets.List(datasets.Value("float64"), length=3),
            "instruction": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "episode_index": datasets.Value("int64"),
            "attempt_index": datasets.Value("int64"),
            "sample_seed": datasets.Value("int64"),
            **{f: datasets.List(datasets.Value("float16")) for f in FIELD_COLUMNS if f in fields},
        }
    )


FEATURES = features()
SCALAR_COLUMNS = tuple(k for k in FEATURES if k not in FRAME_COLUMNS)  # no field columns either


class DatasetError(RuntimeError):
    """A missing, unfinished, truncated or foreign dataset directory; the message says how to fix it."""


def shard_path(split: str, shard_no: int) -> str:
    return DATA_PATH.format(split=split, chunk=shard_no // FILES_PER_CHUNK, file=shard_no % FILES_PER_CHUNK)


# ---------------------------------------------------------------- images
def encode_image(rgb: np.ndarray, fmt: str, jpeg_quality: int = 95, png_compression: int = 1) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, png_compression])
    elif fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    if not ok:
        raise RuntimeError(f"could not encode a {rgb.shape} image as {fmt}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError("an image in the dataset could not be decoded (corrupt shard); rebuild it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------- shards
def write_shard(rows: dict[str, list], path: Path, row_group_size: int) -> None:
    """Write one shard atomically: a temporary file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Same bytes as Dataset.from_dict(rows, features=FEATURES), without hashing the images for a fingerprint
    schema = features(tuple(f for f in FIELD_COLUMNS if f in rows)).arrow_schema
    ds = datasets.Dataset(pa.Table.from_pydict(rows, schema=schema), fingerprint="tla-shard")
    ds.to_parquet(str(tmp), batch_size=row_group_size)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_rows(path: Path) -> int | None:
    """Rows in a finished shard, or None when the file is missing, truncated or not parquet."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):  # ArrowInvalid on a truncated or foreign footer
        return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- meta
def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path, fix: str) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} cannot be read ({e}); {fix}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a {FORMAT} file (foreign directory?); {fix}")
    return obj


def read_build(root: Path) -> dict:
    return _read_json(Path(root) / "meta" / "build.json", "rebuild into a fresh directory with `tla data build`")


def load_info(root: str | Path, check_files: bool = True) -> dict:
    """meta/info.json of a finished dataset, after checking that every shard it lists is intact."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset directory {root} does not exist; build it with `tla data build --preset tiny --out {root}`"
        )
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        if (root / "meta" / "build.json").exists():
            raise DatasetError(
                f"{root} is an unfinished build ({info_path} missing): rerun the same `tla data build` command "
                f"to resume it, or `tla data merge {root} SLICE_DIRS...` for a sliced build"
            )
        raise DatasetError(
            f"{root} is not a TLA tactile dataset ({info_path} missing); "
            f"build one with `tla data build --preset tiny --out DIR`"
        )
    info = _read_json(info_path, f"rebuild {root} with `tla data build`")
    if "tla_version" not in info and "codebase_version" in info:  # datasets built before the rename
        info["tla_version"] = info["codebase_version"]
    if info.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{info_path}: format_version {info.get('format_version')} != {FORMAT_VERSION}; rebuild it")
    if check_files:
        for rel, meta in info["files"].items():
            rows = shard_rows(root / rel)
            if rows != meta["rows"]:
                state = "missing" if not (root / rel).exists() else f"truncated or corrupt ({rows} rows readable)"
                raise DatasetError(
                    f"shard {root / rel} is {state}, expected {meta['rows']} rows: delete it and rerun "
                    f"`tla data build` with the same arguments (it regenerates only missing shards), "
                    f"then the dataset is whole again"
                )
    return info


VERIFIED_CACHE = "meta/.verified.json"  # rel path -> [size, mtime_ns] of shards whose sha256 matched


def corrupt_files(root: str | Path, info: dict, files: list[str] | None = None, use_cache: bool = True) -> list[str]:
    """The files among `files` (default: all) whose sha256 differs from meta/info.json or that are missing.
    A file whose size and mtime match its last successful check is not hashed again (`use_cache=False`
    hashes everything)."""
    root = Path(root)
    files = list(info["files"]) if files is None else list(files)
    cache_path = root / VERIFIED_CACHE
    cache: dict = {}
    if use_cache and cache_path.exists():
        with contextlib.suppress(ValueError):
            cache = json.loads(cache_path.read_text())
    bad, changed = [], False
    for rel in files:
        try:
            st = (root / rel).stat()
        except OSError:
            bad.append(rel)
            continue
        stamp = [st.st_size, st.st_mtime_ns]
        if cache.get(rel) == stamp:
            continue
        if sha256_file(root / rel) != info["files"][rel]["sha256"]:
            bad.append(rel)
            cache.pop(rel, None)
            changed = True
            continue
        cache[rel], changed = stamp, True
    if changed:
        with contextlib.suppress(OSError):  # a read-only dataset is simply hashed every time
            write_json(cache_path, cache)
    return bad


def verify_files(root: str | Path, info: dict, files: list[str] | None = None, use_cache: bool = True) -> list[str]:
    """`files` (default: all) after checking their sha256 against meta/info.json; a corrupt or missing one
    is a DatasetError naming it and the fix."""
    files = list(info["files"]) if files is None else list(files)
    bad = corrupt_files(root, info, files, use_cache)
    if bad:
        names = "; ".join(str(Path(root) / b) for b in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise DatasetError(
            f"{len(bad)} corrupt or missing shard(s) in {root} (sha256 differs from meta/info.json): {names}; "
            f"rerun the `tla data build` command that made it: it rebuilds exactly those shards"
        )
    return files


def dataset_sim_config(root: str | Path):
    """The `SimConfig` that rendered the dataset in `root` (from meta/info.json; shards are not read)."""
    from tla.config import from_dict
    from tla.sim.config import SimConfig

    return from_dict(SimConfig, load_info(root, check_files=False)["sim_config"])


def split_files(info: dict, split: str) -> list[str]:
    if split not in info["splits"]:
        raise DatasetError(f"split {split!r} is not in this dataset; it has {sorted(info['splits'])}")
    return info["splits"][split]["files"]


def tla_version(record: dict) -> str | None:
    """The tla package version that built a dataset (meta/build.json or info.json). Datasets built before
    0.3 stored it as `codebase_version`, which LeRobot uses for its format version ("v3.0")."""
    return record.get("tla_version", record.get("codebase_version"))


CARD_TAGS = ("tactile", "peg-in-hole", "robotics", "vision-language-action", "tla")


def card_header(data_files: dict[str, str], tags: tuple[str, ...] = CARD_TAGS) -> list[str]:
    """The YAML block of a Hugging Face dataset card: license, task category, tags and one `default`
    config whose splits map to the given file globs (so `datasets.load_dataset(DIR)` finds them)."""
    lines = ["---", "license: apache-2.0", "task_categories:", "- robotics", "tags:"]
    lines += [f"- {t}" for t in tags]
    lines += ["configs:", "- config_name: default", "  data_files:"]
    for split, glob in data_files.items():
        lines += [f"  - split: {split}", f"    path: {glob}"]
    return lines + ["---", ""]


def write_card(root: Path, info: dict) -> None:
    """README.md with the HF dataset-card YAML that names the splits: `datasets.load_dataset(str(root))`."""
    lines = card_header({split: f"data/{split}/*/*.parquet" for split in info["splits"]})
    counts = ", ".join(f"{k} {v['samples']}" for k, v in info["splits"].items())
    lines += [f"# TLA tactile-action dataset ({info['preset']} preset, seed {info['seed']})", "",
              f"Samples: {counts}. Built by `tla data build`; see meta/info.json for the full config.", ""]
    (Path(root) / "README.md").write_text("\n".join(lines))


def content_hash(files: dict[str, dict]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return h.hexdigest()


def read_scalars(root: Path, files: list[str]) -> dict[str, np.ndarray]:
    """All non-image columns of the given shards, concatenated (cheap: parquet is columnar)."""
    tables = [pq.read_table(Path(root) / f, columns=list(SCALAR_COLUMNS)) for f in files]
    t = pa.concat_tables(tables) if tables else None
    out = {}
    for c in SCALAR_COLUMNS:
        col = t.column(c).to_pylist() if t is not None else []
        out[c] = np.asarray(col, dtype=np.float64) if c in ("error", "action", "clearance") else np.asarray(col)
    if t is None:
        out["error"] = out["action"] = np.zeros((0, 3))
    return out
