"""The torch Dataset every policy reads: one dict per sample (see TactileDataset.__getitem__)."""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch.utils.data

from tla.data import store
from tla.sim.compose import make_composite
from tla.sim.modality import STORAGE_DTYPE, check_modality, render_field
from tla.sim.observation import ObservationSpec

FIELD_CACHE_BYTES = 512 * 2**20  # per process; a split's field column up to this size is kept whole


class TactileDataset(torch.utils.data.Dataset):
    """Samples of one split of a dataset built by `tla data build`.

    Item: frames uint8 (8, H, W, 3) (left t0..t3, right t0..t3) in the requested `modality` (`rgb`: the
    camera images; `marker_flow` / `depth`: the stored field rendered at the camera's H x W, see
    `tla.sim.modality`; only that modality's column is read), shape str, clearance float,
    error float32 (3,), action float32 (3,), instruction str, answer str, episode_index int,
    attempt_index int, sample_seed int, and composite uint8 (S, S, 3) when composite_size=S is given.

    Scalar columns are read once; images are read per parquet row group (16 rows by default) with a small
    cache, so shuffled access stays cheap and sequential access reads each row group once. A field modality's
    column is small (marker_flow: 6 KB per sample, 37 MB for a 6k-sample split), so it is cached whole, up to
    `FIELD_CACHE_BYTES`: shuffled training reads each row group once instead of once per sample.
    """

    def __init__(self, root: str | Path, split: str, composite_size: int | None = None, cache_groups: int = 8,
                 modality: str = "rgb"):
        self.root = Path(root)
        self.info = store.load_info(self.root)
        self.split = split
        self.modality = check_modality(modality)
        stored = self.info.get("fields", {})
        if modality != "rgb" and modality not in stored:
            raise store.DatasetError(
                f"{self.root} stores no {modality!r} field (it has: {sorted(stored) or 'images only'}); rebuild "
                f"it with this version of `tla data build` (fields are stored by default), or train on modality rgb"
            )
        self._field_shape = tuple(stored.get(modality, ()))
        self.frame_size = (self.info["image"]["height"], self.info["image"]["width"])
        self.observation_spec = ObservationSpec(*self.frame_size, modality)
        self.sim_config = self.info["sim_config"]  # what rendered it; a trained policy records it
        self.composite_size = composite_size
        self.files = store.verify_files(self.root, self.info, store.split_files(self.info, split))
        self.scale = tuple(self.info["action_scale"])
        self._scalars = store.read_scalars(self.root, self.files)
        # (file, row group) boundaries as cumulative row counts
        self._groups: list[tuple[int, int]] = []
        starts = []
        n = 0
        for fi, rel in enumerate(self.files):
            meta = pq.read_metadata(self.root / rel)
            for g in range(meta.num_row_groups):
                starts.append(n)
                self._groups.append((fi, g))
                n += meta.row_group(g).num_rows
        self._starts, self._len = starts, n
        self._cache: OrderedDict = OrderedDict()
        self._cache_groups = cache_groups
        field_bytes = n * int(np.prod(self._field_shape or (0,))) * np.dtype(STORAGE_DTYPE).itemsize
        if modality != "rgb" and field_bytes <= FIELD_CACHE_BYTES:
            self._cache_groups = len(self._groups)
        self._handles: dict = {}

    def __getstate__(self) -> dict:  # DataLoader workers (spawn) get no open files and an empty cache
        return {**self.__dict__, "_cache": OrderedDict(), "_handles": {}}

    def __len__(self) -> int:
        return self._len

    def _group(self, k: int) -> list[list[bytes]]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        fi, g = self._groups[k]
        key = (os.getpid(), fi)  # parquet handles are not shared across DataLoader worker processes
        if key not in self._handles:
            self._handles[key] = pq.ParquetFile(self.root / self.files[fi])
        if self.modality == "rgb":
            table = self._handles[key].read_row_group(g, columns=list(store.FRAME_COLUMNS))
            cols = [table.column(c).combine_chunks().field("bytes").to_pylist() for c in store.FRAME_COLUMNS]
        else:  # one column of flat float16 lists -> (rows, *field shape)
            col = self._handles[key].read_row_group(g, columns=[self.modality]).column(0).combine_chunks()
            cols = col.values.to_numpy(zero_copy_only=False).reshape(len(col), *self._field_shape)
        self._cache[k] = cols
        if len(self._cache) > self._cache_groups:
            self._cache.popitem(last=False)
        return cols

    def frames(self, i: int) -> np.ndarray:
        k = bisect_right(self._starts, i) - 1
        cols = self._group(k)
        r = i - self._starts[k]
        if self.modality != "rgb":
            return render_field(self.modality, cols[r], self.frame_size)
        return np.stack([store.decode_image(c[r]) for c in cols])

    def __getitem__(self, i: int) -> dict:
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for split {self.split!r} with {self._len} samples")
        i = int(i) % self._len
        s = self._scalars
        item = {
            "frames": self.frames(i),
            "shape": str(s["shape"][i]),
            "clearance": float(s["clearance"][i]),
            "error": s["error"][i].astype(np.float32),
            "action": s["action"][i].astype(np.float32),
            "instruction": str(s["instruction"][i]),
            "answer": str(s["answer"][i]),
            "episode_index": int(s["episode_index"][i]),
            "attempt_index": int(s["attempt_index"][i]),
            "sample_seed": int(s["sample_seed"][i]),
        }
        if self.composite_size is not None:
            item["composite"] = make_composite(item["frames"], self.composite_size)
        return item

    @property
    def actions(self) -> np.ndarray:
        """All action labels of the split (N, 3) float64, without reading images (for normalisation)."""
        return self._scalars["action"]

    @property
    def errors(self) -> np.ndarray:
        return self._scalars["error"]
