"""Build the tactile-action dataset: a random insertion policy in the simulator, sharded and resumable.

Random insertion policy (one episode): an initial misalignment drawn from the SimConfig.errors box (redrawn until
the first attempt collides, so every episode gives at least one sample), then up to `max_attempts`
attempts; after each failed one the policy moves by a random correction ~ U[-1, 1] mm, U[-1.5, 1.5] deg
(the label's caps); a step that leaves the box is reflected back into it. Every failed attempt is one
sample; an insertion ends the episode.

Determinism: the unit of work is a shard of `shard_size` samples of one (split, shape). Shard k of a split
runs episodes k*shard_size + j, j = 0, 1, ... (each gives >= 1 sample, so indices never collide) until it
holds its samples. Episode draws come from Generator(SeedSequence([seed, split code, episode])); attempt a
renders with Generator(sample_seed), sample_seed = SeedSequence([seed, split code, episode, a]) -> 63 bits,
so `simulate_attempt(sim_cfg, shape, clearance, error, default_rng(sample_seed))` regenerates a sample.
Workers write whole shards atomically, so the content does not depend on the worker count, and a rerun
of an interrupted build only makes the shards that are missing.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tla
from tla.config import apply_overrides, from_dict, to_dict
from tla.data import store
from tla.data.config import SPLIT_CODES, DataConfig
from tla.data.store import DatasetError
from tla.data.text import encode_action, instruction
from tla.progress import progress_bar
from tla.sim import modality
from tla.sim.geometry import collides
from tla.sim.labels import draw_colliding_error
from tla.sim.modality import FIELD_SHAPES


@dataclass(frozen=True)
class ShardTask:
    split: str
    shape: str
    shard_no: int  # index of the shard within its split; also fixes its episode indices
    samples: int

    @property
    def path(self) -> str:
        return store.shard_path(self.split, self.shard_no)


def plan(cfg: DataConfig) -> list[ShardTask]:
    """All shards of a build, in a fixed order (shapes share a split's samples equally)."""
    tasks = []
    for spec in cfg.splits:
        if spec.name not in SPLIT_CODES:
            raise DatasetError(f"split name {spec.name!r} must be one of {sorted(SPLIT_CODES)}")
        n_shapes = len(spec.shapes)
        shard_no = 0
        for i, shape in enumerate(spec.shapes):
            n = spec.samples // n_shapes + (1 if i < spec.samples % n_shapes else 0)
            for start in range(0, n, cfg.shard_size):
                tasks.append(ShardTask(spec.name, shape, shard_no, min(cfg.shard_size, n - start)))
                shard_no += 1
    return tasks


def sim_config(cfg: DataConfig):
    from tla.sim import SimConfig

    return apply_overrides(SimConfig(), list(cfg.sim_overrides))


def sample_seed(seed: int, split: str, episode: int, attempt: int) -> int:
    state = np.random.SeedSequence([seed, SPLIT_CODES[split], episode, attempt]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: fits parquet int64


def _reflect(e: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Fold a step that leaves the box back inside (steps < box): keeps the errors ~uniform, no pile-up
    at the walls as clipping would give."""
    e = np.where(e > box, 2 * box - e, e)
    return np.where(e < -box, -2 * box - e, e)


def run_episode(cfg: DataConfig, sim_cfg, split: str, shape: str, episode: int) -> list[dict]:
    """One episode of the random insertion policy; returns its failed attempts as samples."""
    from tla import sim

    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLIT_CODES[split], episode]))
    pol = cfg.policy
    box = np.array([sim_cfg.errors.ex, sim_cfg.errors.ey, sim_cfg.errors.erz])  # the misalignment box
    step = np.array([pol.step_xy, pol.step_xy, pol.step_rz])
    samples = []
    error = draw_colliding_error(  # the simulator inserts exactly when the geometry does
        rng, sim_cfg.errors, lambda e: collides(shape, cfg.clearance, e, sim_cfg.geometry),
        what=f"{shape}, clearance {cfg.clearance} mm")
    for attempt in range(pol.max_attempts):
        seed = sample_seed(cfg.seed, split, episode, attempt)
        res = sim.simulate_attempt(sim_cfg, shape, cfg.clearance, error, np.random.default_rng(seed))
        if res.inserted:
            break
        samples.append({
            "frames": res.frames,
            "fields": {k: modality.field(res, sim_cfg.render, k) for k in cfg.fields},
            "error": np.asarray(error, np.float64), "action": np.asarray(res.label, np.float64),
            "episode_index": episode, "attempt_index": attempt, "sample_seed": seed,
        })
        error = _reflect(error + rng.uniform(-step, step), box)
    return samples


def make_shard(cfg: DataConfig, sim_cfg, task: ShardTask) -> dict[str, list]:
    """The rows of one shard (column -> list), ready for store.write_shard."""
    rows: dict[str, list] = {k: [] for k in store.features(cfg.fields)}
    first, n = task.shard_no * cfg.shard_size, 0
    for j in range(task.samples):  # each episode gives >= 1 sample, so `samples` episodes always suffice
        for s in run_episode(cfg, sim_cfg, task.split, task.shape, first + j)[: task.samples - n]:
            for col, frame in zip(store.FRAME_COLUMNS, s["frames"]):
                img = store.encode_image(frame, cfg.image_format, cfg.jpeg_quality, cfg.png_compression)
                rows[col].append({"bytes": img, "path": None})
            for name, value in s["fields"].items():
                rows[name].append(value.astype(modality.STORAGE_DTYPE).ravel())
            rows["shape"].append(task.shape)
            rows["clearance"].append(float(cfg.clearance))
            rows["error"].append(s["error"].tolist())
            rows["action"].append(s["action"].tolist())
            rows["instruction"].append(instruction(task.shape))
            rows["answer"].append(encode_action(s["action"], cfg.action_scale))
            for k in ("episode_index", "attempt_index", "sample_seed"):
                rows[k].append(int(s[k]))
            n += 1
        if n == task.samples:
            return rows
    raise RuntimeError(f"shard {task} could not be filled")  # unreachable: every episode gives a sample


# ---------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(cfg_dict: dict, root: str) -> None:
    import datasets

    datasets.disable_progress_bars()
    cfg = from_dict(DataConfig, cfg_dict)
    _WORKER.update(cfg=cfg, sim_cfg=sim_config(cfg), root=Path(root))


def _build_one(task: ShardTask) -> ShardTask:
    cfg, root = _WORKER["cfg"], _WORKER["root"]
    store.write_shard(make_shard(cfg, _WORKER["sim_cfg"], task), root / task.path, cfg.row_group_size)
    return task


def _build_record(cfg: DataConfig) -> dict:
    """What meta/build.json holds (as JSON reads it back: tuples become lists)."""
    return json.loads(json.dumps({
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "tla_version": tla.__version__,  # was `codebase_version` (LeRobot's key for its format version)
        "data_config": to_dict(cfg),
        "sim_config": to_dict(sim_config(cfg)),
    }))


def _same_build(a: dict, b: dict) -> bool:
    keys = ("format_version", "data_config", "sim_config")
    return store.tla_version(a) == store.tla_version(b) and all(a.get(k) == b.get(k) for k in keys)


def _drop_corrupt(root: Path, mine: list[str]) -> None:
    """A finished dataset whose shard no longer matches its recorded sha256 is made unfinished again: the
    bad shards are deleted (the build regenerates them bit for bit) and meta/info.json is rewritten last."""
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        return
    info = store.load_info(root, check_files=False)
    bad = store.corrupt_files(root, info, [f for f in mine if f in info["files"]])
    for rel in bad:
        print(f"corrupt shard {root / rel} (sha256 differs from meta/info.json): rebuilding it")
        (root / rel).unlink(missing_ok=True)
    if bad:
        info_path.unlink()


def _only_temp_files(root: Path) -> bool:
    """True when `root` holds files, all of them our atomic writers' leftovers (.NAME.tmp-PID)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return bool(files) and all(p.name.startswith(".") and ".tmp-" in p.name for p in files)


def missing(root: Path, tasks: list[ShardTask]) -> list[ShardTask]:
    """Tasks whose shard is absent or unreadable or has the wrong row count (read-only)."""
    return [t for t in tasks if store.shard_rows(root / t.path) != t.samples]


def _clean(root: Path, tasks: list[ShardTask]) -> list[ShardTask]:
    """Our unfinished tasks, after removing what killed writers left behind (temp files, bad shards)."""
    for t in tasks:
        path = root / t.path
        for tmp in path.parent.glob(f".{path.name}.tmp-*"):
            tmp.unlink(missing_ok=True)
    todo = missing(root, tasks)
    for t in todo:
        (root / t.path).unlink(missing_ok=True)
    return todo


def build(
    cfg: DataConfig,
    root: str | Path,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    max_shards: int | None = None,
    progress: bool = True,
) -> dict | None:
    """Build (or resume) the dataset into `root`. Returns meta/info.json once the dataset is complete.

    `shard_index/num_shards` builds every num_shards-th shard (a cluster job array; join the slices with
    `merge`). `max_shards` stops after that many new shards (time-boxed jobs; rerun to continue).
    """
    root = Path(root)
    cfg.validate()  # bad values fail here, before the folder is claimed
    store.features(cfg.fields)  # as does an unknown field name
    record = _build_record(cfg)
    build_json = root / "meta" / "build.json"
    if build_json.exists():
        if not _same_build(store.read_build(root), record):
            raise DatasetError(
                f"{build_json} holds a different build (config, sim config or code version differ); "
                f"resume with the same arguments, or build into a fresh directory"
            )
    elif root.exists() and _only_temp_files(root):  # a kill while build.json was written: start afresh
        for leftover in (p for p in root.rglob("*") if p.is_file()):
            leftover.unlink()
        store.write_json(build_json, record)
    elif root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} is not empty and holds no TLA build (meta/build.json); choose a fresh --out")
    else:
        store.write_json(build_json, record)

    if not 0 <= shard_index < num_shards:
        raise DatasetError(f"--shard-index must be in [0, {num_shards}), got {shard_index}")
    tasks = plan(cfg)
    mine = [t for i, t in enumerate(tasks) if i % num_shards == shard_index]
    _drop_corrupt(root, [t.path for t in mine])
    todo = _clean(root, mine)[:max_shards]
    if not todo and (root / "meta" / "info.json").exists():
        return store.load_info(root)  # already complete
    _run(cfg, root, todo, workers, progress)
    if missing(root, tasks):
        return None
    return finalize(root)


def _run(cfg: DataConfig, root: Path, todo: list[ShardTask], workers: int, progress: bool) -> None:
    if not todo:
        return
    init = (to_dict(cfg), str(root))
    with progress_bar("build", "samples", enabled=progress) as bar:
        job = bar.add_task("build", total=sum(t.samples for t in todo))
        if workers <= 1:
            _init_worker(*init)
            results = map(_build_one, todo)
            for t in results:
                bar.advance(job, t.samples)
            return
        with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for t in pool.imap_unordered(_build_one, todo):
                bar.advance(job, t.samples)


# ---------------------------------------------------------------- finishing
def _summary(x: np.ndarray) -> dict:
    if len(x) == 0:
        return {}
    q = np.quantile(x, [0.01, 0.5, 0.99], axis=0)
    return {"mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(),
            "max": x.max(0).tolist(), "q01": q[0].tolist(), "q50": q[1].tolist(), "q99": q[2].tolist()}


def compute_stats(root: Path, split_files: dict[str, list[str]]) -> dict:
    out, all_a, all_e = {}, [], []
    for split, files in split_files.items():
        s = store.read_scalars(root, files)
        out[split] = {"count": len(s["shape"]), "action": _summary(s["action"]), "error": _summary(s["error"])}
        all_a.append(s["action"])
        all_e.append(s["error"])
    out["all"] = {"count": int(sum(len(a) for a in all_a)),
                  "action": _summary(np.concatenate(all_a)), "error": _summary(np.concatenate(all_e))}
    return out


def finalize(root: str | Path) -> dict:
    """Check every planned shard, then write meta/stats.json and meta/info.json (last)."""
    t0 = time.perf_counter()
    root = Path(root)
    record = store.read_build(root)
    cfg = from_dict(DataConfig, record["data_config"])
    tasks = plan(cfg)
    absent = [t.path for t in missing(root, tasks)]
    if absent:
        raise DatasetError(
            f"{root}: {len(absent)} of {len(tasks)} shards missing or incomplete, e.g. {root / absent[0]}; "
            f"rerun the same `tla data build` (or build the missing slices) to make them"
        )
    files = {t.path: {"rows": t.samples, "sha256": store.sha256_file(root / t.path)} for t in tasks}
    splits = {}
    for spec in cfg.splits:
        mine = [t for t in tasks if t.split == spec.name]
        sc = store.read_scalars(root, [t.path for t in mine])
        shapes, counts = np.unique(sc["shape"], return_counts=True)
        splits[spec.name] = {
            "samples": len(sc["shape"]),
            "episodes": len(np.unique(sc["episode_index"])),
            "shapes": {str(k): int(v) for k, v in zip(shapes, counts)},
            "files": [t.path for t in mine],
        }
    store.write_json(root / "meta" / "stats.json", compute_stats(root, {k: v["files"] for k, v in splits.items()}))
    sim = record["sim_config"]
    info = {
        **record,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "clearance": cfg.clearance,
        "action_scale": list(cfg.action_scale),
        "image": {"format": cfg.image_format, "jpeg_quality": cfg.jpeg_quality,
                  "height": sim["render"]["height"], "width": sim["render"]["width"]},
        "frame_order": list(store.FRAME_COLUMNS),
        "total_samples": int(sum(s["samples"] for s in splits.values())),
        "splits": splits,
        "data_path": store.DATA_PATH,
        "features": store.features(cfg.fields).to_dict(),
        "fields": {f: list(FIELD_SHAPES[f]) for f in cfg.fields},
        "files": files,
        "content_hash": store.content_hash(files),
        "finalize_seconds": round(time.perf_counter() - t0, 3),
    }
    store.write_card(root, info)
    store.write_json(root / "meta" / "info.json", info)
    return info


def merge(out: str | Path, inputs: list[str | Path]) -> dict:
    """Join slice builds (`--shard-index/--num-shards`) into `out` (hard links where possible)."""
    import os
    import shutil

    out = Path(out)
    sources = [(store.read_build(Path(i)), Path(i)) for i in inputs]
    if out.exists() and (out / "meta" / "build.json").exists():
        sources.insert(0, (store.read_build(out), out))
    if not sources:
        raise DatasetError("nothing to merge: give the slice directories")
    reference, first = sources[0]
    for record, src in sources[1:]:
        if not _same_build(reference, record):
            raise DatasetError(f"{src} was built with a different config or code version than {first}; "
                               "it cannot be merged")
    store.write_json(out / "meta" / "build.json", reference)
    for src in map(Path, inputs):
        if src.resolve() == out.resolve():
            continue
        for f in sorted((src / "data").rglob("*.parquet")):
            dst = out / f.relative_to(src)
            if dst.exists() and store.sha256_file(dst) == store.sha256_file(f):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            try:
                os.link(f, tmp)
            except OSError:
                shutil.copyfile(f, tmp)
            os.replace(tmp, dst)
    return finalize(out)


def with_seed(cfg: DataConfig, seed: int | None) -> DataConfig:
    return cfg if seed is None else dataclasses.replace(cfg, seed=seed)
