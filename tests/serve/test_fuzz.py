"""Malformed requests never get a 5xx, each named error gets its 4xx, and the server keeps serving."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tla.client import encode_png


def _img(fmt: str, size=(60, 80), mode="RGB", truncate=False) -> str:
    buf = io.BytesIO()
    Image.new(mode, size[::-1], 128).save(buf, format=fmt)
    raw = buf.getvalue()
    return base64.b64encode(raw[: len(raw) // 2] if truncate else raw).decode()


GOOD = encode_png(np.full((60, 80, 3), 200, np.uint8))
BAD_IMAGES = {
    "bad base64": "not base64!!",
    "non-image bytes": base64.b64encode(b"hello, this is not an image at all").decode(),
    "gif": _img("GIF"),
    "bmp": _img("BMP"),
    "truncated png": _img("PNG", truncate=True),
    "huge png": _img("PNG", size=(4000, 4000), mode="L"),  # small file, 16 Mpx decoded: refused before decoding
    "tiny png": _img("PNG", size=(1, 1)),
}
OTHER_SIZE = encode_png(np.zeros((30, 40, 3), np.uint8))


def _post(url, body) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{url}/act", content=body, headers={"content-type": "application/json"})
    return httpx.post(f"{url}/act", json=body)


@pytest.mark.parametrize("case, body, status, field", [
    ("missing everything", {}, 422, "frames"),
    ("7 frames", {"frames": [GOOD] * 7, "shape": "square"}, 422, "frames"),
    ("9 frames", {"frames": [GOOD] * 9, "shape": "square"}, 422, "frames"),
    ("frames not a list", {"frames": GOOD, "shape": "square"}, 422, "frames"),
    ("frame not a string", {"frames": [GOOD] * 7 + [3], "shape": "square"}, 422, "frames.7"),
    ("unknown shape", {"frames": [GOOD] * 8, "shape": "star"}, 422, "shape"),
    ("shape wrong type", {"frames": [GOOD] * 8, "shape": 5}, 422, "shape"),
    ("no shape", {"frames": [GOOD] * 8}, 422, "shape"),
    ("instruction without shape", {"frames": [GOOD] * 8, "instruction": "insert the peg"}, 422, "instruction"),
    ("both inputs", {"frames": [GOOD] * 8, "composite": GOOD, "shape": "square"}, 422, "composite"),
    ("unknown field", {"frames": [GOOD] * 8, "shape": "square", "speed": 3}, 422, "speed"),
    ("unequal frame sizes", {"frames": [GOOD] * 7 + [OTHER_SIZE], "shape": "square"}, 422, "frames[7]"),
    *[(name, {"frames": [GOOD] * 3 + [img] + [GOOD] * 4, "shape": "square"}, 422, "frames[3]")
      for name, img in BAD_IMAGES.items()],
    ("bad composite", {"composite": BAD_IMAGES["gif"], "shape": "round"}, 422, "composite"),
    ("invalid json", b'{"frames": [', 422, ""),
    ("json not an object", b"[1, 2, 3]", 422, ""),
    ("deeply nested json", b"[" * 100_000, 400, "body"),
    ("oversize body", b"x" * (3 * 2**20), 413, "limit"),
])
def test_named_errors(server, case, body, status, field):
    r = _post(server, body)
    assert r.status_code == status, (case, r.text[:300])
    assert field in json.dumps(r.json()), (case, r.text[:300])


def test_a_refused_body_always_gets_its_reply_not_a_connection_reset(server):
    # the server closes after a 413; with the client still sending, unread input used to reset the socket
    statuses = [_post(server, b"x" * (3 * 2**20)).status_code for _ in range(40)]
    assert statuses == [413] * 40


def test_oversize_chunked_body(server):
    def chunks():
        for _ in range(40):
            yield b"x" * 2**16 * 2

    r = httpx.post(f"{server}/act", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=10)
images = st.sampled_from([GOOD, OTHER_SIZE, *BAD_IMAGES.values()]) | st.text(max_size=30) | json_values
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "frames": st.lists(images, min_size=0, max_size=10) | json_values,
        "composite": images,
        "shape": st.sampled_from(["square", "round", "star", "", "SQUARE"]) | json_values,
        "instruction": st.text(max_size=60) | st.just("insert the hexagon peg") | json_values,
        "request_id": st.text(max_size=200) | json_values,
    }),
    st.binary(max_size=200),
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_fuzz_no_server_error(server, body):
    r = _post(server, body)
    assert r.status_code < 500, r.text[:300]
    assert r.status_code in (200, 400, 413, 422), r.text[:300]


def test_still_healthy_after_fuzz(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    r = httpx.post(f"{server}/act", json={"frames": [GOOD] * 8, "shape": "square"})
    assert r.status_code == 200 and len(r.json()["action_list"]) == 3
