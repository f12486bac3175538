"""OpenVLA-style requests (openvla/openvla vla-scripts/deploy.py: json-numpy `image` + `instruction`, the
`encoded` wrapper, the bare json-numpy action), the public /health, and the minimum frame size."""

import json

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tla.client import PolicyClient, encode_png
from tla.policies.registry import load_policy
from tla.serve import jsonnumpy
from tla.serve.app import ServeSettings, create_app
from tla.sim.compose import make_composite


def _post(url, body, **params) -> httpx.Response:
    return httpx.post(f"{url}/act", json=body, params=params)


def _action(answer) -> list[float]:
    """The bare json-numpy action (as OpenVLA clients read it) as a list."""
    arr = answer if isinstance(answer, dict) else json.loads(answer)
    assert arr["dtype"] == "<f8" and arr["shape"] == [3]
    return jsonnumpy.decode(arr["__numpy__"], np.dtype("<f8"), (3,)).tolist()


@pytest.fixture(scope="module")
def native(server, frames):
    with PolicyClient(server) as c:
        return c.act(frames, "square")["action_list"]


def test_json_numpy_format_is_the_packages():
    # json_numpy.dumps(np.arange(3, dtype=np.uint8)) in json-numpy 1.0-2.1 (default(): b64 bytes, descr, shape)
    assert jsonnumpy.encode(np.arange(3, dtype=np.uint8)) == {"__numpy__": "AAEC", "dtype": "|u1", "shape": [3]}
    frames = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(jsonnumpy.decode(jsonnumpy.encode(frames)["__numpy__"], np.uint8, (2, 3, 4)), frames)


def test_openvla_image_and_frames_get_the_native_action(server, frames, native):
    image = {"image": jsonnumpy.encode(make_composite(frames, (180, 240))), "instruction": "insert the square peg"}
    r = _post(server, image)
    assert r.status_code == 200 and _action(r.json()) == native  # composite cells are the frames, bit-exact
    r = _post(server, {"frames": jsonnumpy.encode(frames), "instruction": "Square peg, please", "unnorm_key": "x"})
    assert r.status_code == 200 and _action(r.json()) == native


def test_encoded_wrapper_answers_a_json_string(server, frames, native):
    inner = {"image": jsonnumpy.encode(make_composite(frames, (180, 240))), "instruction": "insert the square peg"}
    r = _post(server, {"encoded": json.dumps(inner)})
    assert r.status_code == 200 and isinstance(r.json(), str)  # deploy.py: JSONResponse(json_numpy.dumps(action))
    assert _action(r.json()) == native


def test_format_flag_chooses_the_answer(server, frames, native):
    full = _post(server, {"frames": jsonnumpy.encode(frames), "instruction": "square"}, format="full").json()
    assert full["action_list"] == native and full["shape"] == "square"
    bare = _post(server, {"frames": [encode_png(f) for f in frames], "shape": "square"}, format="openvla").json()
    assert _action(bare) == native
    default = _post(server, {"frames": [encode_png(f) for f in frames], "shape": "square"}).json()
    assert default["action_list"] == native  # native requests keep the ActResponse


IMG = jsonnumpy.encode(np.zeros((180, 240, 3), np.uint8))


@pytest.mark.parametrize("body, field, words", [
    ({"image": {**IMG, "dtype": "<f4"}, "instruction": "square"}, "dtype", "uint8"),
    ({"image": {**IMG, "__numpy__": "AAAA"}, "instruction": "square"}, "image", "need 129600"),
    ({"image": {**IMG, "__numpy__": "AA*A"}, "instruction": "square"}, "image", "not valid base64"),
    ({"image": {**IMG, "shape": [180, 720]}, "instruction": "square"}, "shape", "(H, W, 3)"),
    ({"image": {"__numpy__": "AAAA", "dtype": "|u1"}, "instruction": "square"}, "shape", "required"),
    ({"image": IMG, "instruction": "insert the peg"}, "instruction", "peg shape"),
    ({"image": IMG, "frames": jsonnumpy.encode(np.zeros((8, 20, 20, 3), np.uint8)), "instruction": "square"},
     "body", "exactly one"),
    ({"image": jsonnumpy.encode(np.zeros((600, 600, 3), np.uint8)), "instruction": "square"}, "image",
     "outside [48, 512]"),  # the server's max_image_side applies to arrays too, before decoding
    ({"frames": jsonnumpy.encode(np.zeros((7, 20, 20, 3), np.uint8)), "instruction": "square"}, "shape", "(8, H"),
    ({"encoded": "{not json"}, "encoded", "not valid JSON"),
    ({"encoded": json.dumps({"image": IMG})}, "encoded", "instruction"),
    ({"encoded": json.dumps({"instruction": "square"}), "image": IMG}, "image", "Extra inputs"),
])
def test_bad_json_numpy_gets_a_clear_422(server, body, field, words):
    r = _post(server, body)
    assert r.status_code == 422, r.text[:300]
    detail = r.json()["detail"]
    assert any(field in e["loc"] and words in e["msg"] for e in detail), detail


@pytest.mark.parametrize("body, words", [
    ({"frames": [encode_png(np.zeros((3, 3, 3), np.uint8))] * 8, "shape": "square"}, "outside [16,"),
    ({"frames": [encode_png(np.zeros((15, 80, 3), np.uint8))] * 8, "shape": "square"}, "outside [16,"),
    ({"composite": encode_png(np.zeros((9, 9, 3), np.uint8)), "shape": "square"}, "outside [48,"),
    ({"frames": jsonnumpy.encode(np.zeros((8, 3, 3, 3), np.uint8)), "instruction": "square"}, "at least 16 px"),
    ({"image": jsonnumpy.encode(np.zeros((9, 9, 3), np.uint8)), "instruction": "square"}, "at least 48 px"),
])
def test_tiny_frames_refused(server, body, words):
    r = _post(server, body)
    assert r.status_code == 422 and words in r.text, r.text[:300]


def test_sixteen_pixel_frames_accepted(server):
    frames = np.full((8, 16, 16, 3), 77, np.uint8)
    assert _post(server, {"frames": [encode_png(f) for f in frames], "shape": "round"}).status_code == 200
    assert _post(server, {"frames": jsonnumpy.encode(frames), "instruction": "round"}).status_code == 200


def test_health_needs_no_key_but_everything_else_does(bc_run, frames):
    client = TestClient(create_app(load_policy(bc_run), ServeSettings(api_key="k3y")))
    assert client.get("/health").json()["status"] == "ok"
    body = {"frames": jsonnumpy.encode(frames), "instruction": "square"}
    for r in (client.post("/act", json=body), client.get("/info"), client.get("/openapi.json"),
              client.post("/health"), client.get("/health/", follow_redirects=False)):
        assert r.status_code == 401, r.request.url
    r = client.post("/act", json=body, headers={"X-API-Key": "k3y"})
    assert r.status_code == 200 and len(_action(r.json())) == 3
