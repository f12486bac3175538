"""The json-numpy wire format (https://github.com/Crimson-Crow/json-numpy, v1.0-2.1), as OpenVLA's REST
server (`vla-scripts/deploy.py`) speaks it: an array is the JSON object
  {"__numpy__": <base64 of the C-order bytes>, "dtype": <numpy descr, e.g. "|u1", "<f8">, "shape": [d0, d1, ...]}
(json_numpy.default / object_hook). Implemented here (a few lines) instead of depending on the package.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from numpy.lib.format import dtype_to_descr


def encode(arr: np.ndarray) -> dict:
    """An array as json-numpy's JSON object (what `json_numpy.dumps` writes for it)."""
    arr = np.asarray(arr)
    return {"__numpy__": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii"),
            "dtype": dtype_to_descr(arr.dtype), "shape": list(arr.shape)}


def decode(data: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """base64 `data` -> array of `dtype` and `shape`; ValueError with a readable reason when the data does not
    hold exactly that array (bad base64, wrong byte count). The caller checks dtype and shape (size) first."""
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("`__numpy__` is not valid base64") from None
    if len(raw) != need:
        raise ValueError(f"the data holds {len(raw)} bytes; dtype {np.dtype(dtype)} and shape {list(shape)} need {need}")
    return np.frombuffer(raw, dtype).reshape(shape)
