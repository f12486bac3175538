"""The policy server on a real uvicorn on 127.0.0.1: answers, composite input, info, batching, auth."""

import threading

import httpx
import numpy as np
import pytest

from tla.client import PolicyClient, PolicyError, encode_png
from tla.policies.base import OBSERVATION, SHAPE, make_batch
from tla.policies.registry import load_policy
from tla.serve.app import ServeSettings, background_server, check_bind, create_app
from tla.sim.compose import make_composite


def test_act_matches_in_process_policy(server, bc_run, frames):
    with PolicyClient(server) as c:
        ans = c.act(frames, "square", request_id="r1")
    expected = load_policy(bc_run).predict(make_batch(frames, "square")).actions[0]
    assert ans["action_list"] == [float(v) for v in expected]  # PNG is lossless: bit-identical
    assert ans["action"]["dx_mm"] == ans["action_list"][0]
    assert ans["policy"] == "bc" and ans["request_id"] == "r1" and ans["text"] is None and ans["latency_ms"] > 0


def test_composite_and_instruction(server, frames):
    with PolicyClient(server) as c:
        a = c.act(frames, "triangle")
        b = c.act(composite=make_composite(frames, (180, 240)), instruction="Insert the triangle peg, please.")
    assert a["action_list"] == b["action_list"] and b["shape"] == "triangle"


def test_info_health_openapi(server):
    with PolicyClient(server) as c:
        info, health = c.info(), c.health()
    assert info["policy"] == "bc" and info["frame_size"] == [60, 80] and info["model_input"]["image_size"] == [24, 32]
    assert info["action_units"] == ["mm", "mm", "deg"] and not info["limits"]["api_key_required"]
    assert health["status"] == "ok"
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "/act" in schema["paths"] and "ActRequest" in schema["components"]["schemas"]


def test_concurrent_requests_are_batched(bc_run, frames):
    class Slow:  # records batch sizes; slow enough that requests pile up behind the first call
        name = "slow"
        input_features = (OBSERVATION, SHAPE)

        def __init__(self):
            self.inner, self.sizes = load_policy(bc_run), []

        def predict(self, batch):
            import time

            time.sleep(0.05)
            self.sizes.append(len(batch[SHAPE]))
            return self.inner.predict(batch)

    policy = Slow()
    with background_server(create_app(policy, ServeSettings(max_batch=4, max_wait_ms=20))) as url:
        results = [None] * 8

        def call(i):
            with PolicyClient(url) as c:
                results[i] = c.act(frames, "square")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert sum(policy.sizes) == 8 and max(policy.sizes) > 1 and max(policy.sizes) <= 4
    # same input, same answer whatever the batch (to float32 rounding: BLAS kernels depend on the batch size)
    np.testing.assert_allclose([r["action_list"] for r in results], [results[0]["action_list"]] * 8, atol=1e-5)


def test_api_key_checked_on_every_request_but_health(bc_run, frames):
    app = create_app(load_policy(bc_run), ServeSettings(api_key="s3cret"))
    with background_server(app) as url:
        assert httpx.get(url + "/health").json()["status"] == "ok"  # load balancers poll it without the key
        for path in ("/info", "/openapi.json", "/docs", "/health/"):
            assert httpx.get(url + path).status_code == 401
            assert httpx.get(url + path, headers={"X-API-Key": "wrong"}).status_code == 401
        with pytest.raises(PolicyError) as e:
            PolicyClient(url).act(frames, "square")
        assert e.value.status == 401
        with PolicyClient(url, api_key="s3cret") as c:
            assert c.health()["status"] == "ok" and len(c.act(frames, "square")["action_list"]) == 3


def test_bind_rules():
    check_bind("127.0.0.1", False, None)
    check_bind("::1", False, None)
    check_bind("localhost", False, None)
    for allow, key in ((False, None), (True, None), (False, "k")):
        with pytest.raises(ValueError, match="allow-remote"):
            check_bind("0.0.0.0", allow, key)
    check_bind("0.0.0.0", True, "k")


def test_cli_refuses_remote_bind_without_key(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tla.cli import app

    monkeypatch.delenv("TLA_API_KEY", raising=False)
    res = CliRunner().invoke(app, ["serve", "--run", str(tmp_path), "--host", "0.0.0.0", "--allow-remote"])
    assert res.exit_code != 0 and "API key" in res.output


def test_png_roundtrip_is_lossless(frames):
    import base64

    import cv2

    raw = base64.b64decode(encode_png(frames[0]))
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, frames[0])


def test_jpeg_and_grayscale_frames_accepted(server):
    import base64
    import io

    from PIL import Image

    def b64(fmt, mode):
        buf = io.BytesIO()
        Image.new(mode, (80, 60), 90).save(buf, format=fmt)
        return base64.b64encode(buf.getvalue()).decode()

    for fmt, mode in (("JPEG", "RGB"), ("PNG", "L"), ("PNG", "RGBA")):
        r = httpx.post(f"{server}/act", json={"frames": [b64(fmt, mode)] * 8, "shape": "hexagon"})
        assert r.status_code == 200, (fmt, mode, r.text)


def test_decoded_pixels_and_decodes_in_flight_are_bounded(bc_run):
    """16 concurrent requests of 8 PNG frames at 2048 x 2048 (inside the byte limit) took the server from
    0.9 to 3.5 GB: frames over the pixel limit are refused from their header, and at most
    max_decodes_in_flight requests decode at once."""
    import time

    from fastapi.testclient import TestClient

    from tla.serve import app as serve_app

    big = encode_png(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 MP, small as PNG
    app = create_app(load_policy(bc_run), ServeSettings(max_image_side=2048))
    r = TestClient(app).post("/act", json={"frames": [big] * 8, "shape": "square"})
    assert r.status_code == 422 and "over the server's limit of 1048576" in r.text

    inside, peak, lock = [0], [0], threading.Lock()
    real = serve_app._decode_observation

    def counting(req, s):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)  # hold the decode so that requests overlap
        try:
            return real(req, s)
        finally:
            with lock:
                inside[0] -= 1

    small = [encode_png(np.zeros((30, 40, 3), np.uint8))] * 8
    serve_app._decode_observation = counting
    try:
        client = TestClient(create_app(load_policy(bc_run), ServeSettings(max_decodes_in_flight=2)))
        threads = [threading.Thread(target=lambda: client.post("/act", json={"frames": small, "shape": "square"}))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        serve_app._decode_observation = real
    assert peak[0] == 2


def test_lifespan_can_end_and_start_again(bc_run, frames):
    """A lifespan that ends closes the batcher; the next one restarts it (test clients, schemathesis cycle
    lifespans per test: requests used to hang until predict_timeout_s); a closed batcher answers 503 at once."""
    from fastapi.testclient import TestClient

    app = create_app(load_policy(bc_run), ServeSettings(predict_timeout_s=5.0))
    body = {"frames": [encode_png(f) for f in frames], "shape": "square"}
    for _ in range(2):
        with TestClient(app) as c:
            assert c.post("/act", json=body).status_code == 200
    r = TestClient(app).post("/act", json=body)  # no lifespan: the batcher stays closed
    assert r.status_code == 503 and "shutting down" in r.text
