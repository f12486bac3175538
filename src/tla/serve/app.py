"""The policy server: a FastAPI app around one loaded policy and a micro-batcher.

Endpoints: POST /act (tactile frames or composite + shape -> action), GET /health, GET /info, plus the
OpenAPI schema (/openapi.json, /docs). Bad input always gets a 4xx whose message names the field:
  413  body over `max_body_bytes` (checked on Content-Length before reading, and while reading; a refused
       body up to 4x the limit is drained first, so the client reads the reply, not a reset)
  401  missing / wrong X-API-Key when the app has a key (every path)
  422  schema errors (pydantic), bad base64, not PNG/JPEG, image sizes out of bounds, frames of unequal size
Composite input: the image is split into a 3x3 grid of equal cells (H // 3 x W // 3, the remainder
ignored, as `make_composite` pads it), the first 8 cells row-major are the frames left t0..t3, right
t0..t3, and each cell is resized to the run's frame size when known. A composite built by
`make_composite(frames, (3H, 3W))` splits back into exactly `frames`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import ipaddress
import json
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tla.serve.batching import MicroBatcher
from tla.serve.schemas import Action, ActRequest, ActResponse, Health, Info
from tla.sim.compose import NUM_FRAMES


@dataclass
class ServeSettings:
    max_batch: int = 8  # requests per policy call
    max_wait_ms: float = 5.0  # how long the batcher waits to fill a batch
    max_body_bytes: int = 16 * 2**20  # 8 PNG frames of 240 x 320 are ~2.5 MB as base64
    max_image_side: int = 2048  # px, per decoded image (checked before decoding)
    min_image_side: int = 3
    # decoded pixels per image, checked from the header before decoding: 8 frames at 2048 x 2048 decode to
    # 100 MB per request; 1 MP holds a 616 px composite or frames 3x the paper's 240 x 320
    max_image_pixels: int = 1024 * 1024
    max_decodes_in_flight: int = 4  # requests decoding images at once (the others wait): bounds their memory
    predict_timeout_s: float = 120.0
    api_key: str | None = None  # when set, every request needs the X-API-Key header
    frame_size: tuple[int, int] | None = None  # (H, W) composite cells are resized to; None: keep cell size

    def public(self) -> dict:
        d = asdict(self)
        d["api_key_required"] = d.pop("api_key") is not None
        return d


# ------------------------------------------------------------------------------------------- binding
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool, api_key: str | None) -> None:
    """Refuse a non-loopback address unless remote access is explicitly allowed and protected by a key."""
    if not is_loopback(host) and not (allow_remote and api_key):
        raise ValueError(f"refusing to listen on {host}: a non-loopback address needs --allow-remote and an API key "
                         "(--api-key or env TLA_API_KEY)")


# ---------------------------------------------------------------------------------------- ASGI guard
class Guard:
    """Pure ASGI middleware: API key check, then the body byte limit (413 before the body is read)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.limit = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})["t_arrival"] = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None:
            given = headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.api_key.encode()):
                return await self._refuse(receive, send, 401, "missing or wrong X-API-Key header")
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _reply(send, 400, "invalid Content-Length header")
            if int(length) > self.limit:
                return await self._refuse(receive, send, 413, f"request body over the limit of {self.limit} bytes")
        chunks, size = [], 0
        while True:  # read (and count) the body here, so a chunked upload cannot exceed the limit either
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(receive, send, 413, f"request body over the limit of {self.limit} bytes")
            if not msg.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, receive, send, status: int, message: str) -> None:
        """Reply `status`, after reading and dropping the request's body (up to 4x the limit): a server
        that closes a connection with unread input resets it, and a client still sending its body then
        sees "connection reset" instead of the 401 / 413 (seen in ~7% of oversize posts under load)."""
        budget = 4 * self.limit
        while budget > 0:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            budget -= len(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        await _reply(send, status, message)


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# -------------------------------------------------------------------------------------------- images
def _bad(field: str, msg: str, status: int = 422) -> HTTPException:
    return HTTPException(status, detail=[{"loc": ["body", *field.replace("]", "").split("[")], "msg": f"{field}: {msg}",
                                          "type": "value_error"}])


def decode_image(b64: str, field: str, s: ServeSettings) -> np.ndarray:
    """base64 PNG/JPEG -> uint8 RGB (H, W, 3); HTTP 422 naming `field` on any problem. PIL reads the header only
    (format, size: a decompression bomb is refused before any pixel is decoded); OpenCV decodes."""
    from PIL import Image

    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(field, "not valid base64") from None
    try:
        img = Image.open(io.BytesIO(raw))
    except Exception:  # noqa: BLE001 - PIL raises many types for bytes that are not an image
        raise _bad(field, "not a PNG or JPEG image") from None
    if img.format not in ("PNG", "JPEG"):
        raise _bad(field, f"image format {img.format} not accepted; send PNG or JPEG")
    w, h = img.size
    if not (s.min_image_side <= h <= s.max_image_side and s.min_image_side <= w <= s.max_image_side):
        raise _bad(field, f"image size {h}x{w} (HxW) outside [{s.min_image_side}, {s.max_image_side}] px per side")
    if h * w > s.max_image_pixels:
        raise _bad(field, f"image size {h}x{w} is {h * w} pixels, over the server's limit of {s.max_image_pixels}; "
                          f"send the frames at the sensor's resolution")
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)  # header checked: decode (faster than PIL)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise _bad(field, "the image data is corrupt or truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def split_composite(comp: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray:
    """3x3 composite (H, W, 3) -> (8, h, w, 3): equal cells H // 3 x W // 3, resized to `frame_size`."""
    ch, cw = comp.shape[0] // 3, comp.shape[1] // 3
    cells = [comp[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] for r, c in (divmod(i, 3) for i in range(NUM_FRAMES))]
    if frame_size is not None and tuple(frame_size) != (ch, cw):
        h, w = frame_size
        interp = cv2.INTER_AREA if h <= ch and w <= cw else cv2.INTER_LINEAR
        cells = [cv2.resize(c, (w, h), interpolation=interp) for c in cells]
    return np.ascontiguousarray(np.stack(cells))


def observation(req: ActRequest, s: ServeSettings, gate: threading.BoundedSemaphore | None = None) -> np.ndarray:
    """The request's images decoded into one observation; `gate` bounds how many requests decode at once."""
    with gate or contextlib.nullcontext():
        return _decode_observation(req, s)


def _decode_observation(req: ActRequest, s: ServeSettings) -> np.ndarray:
    if req.composite is not None:
        return split_composite(decode_image(req.composite, "composite", s), s.frame_size)
    frames = [decode_image(f, f"frames[{i}]", s) for i, f in enumerate(req.frames or [])]
    for i, f in enumerate(frames[1:], 1):
        if f.shape != frames[0].shape:
            raise _bad(f"frames[{i}]", f"size {f.shape[0]}x{f.shape[1]} differs from frames[0] "
                                       f"({frames[0].shape[0]}x{frames[0].shape[1]}); all 8 frames must match")
    return np.stack(frames)


# ----------------------------------------------------------------------------------------------- app
def _policy_info(policy) -> tuple[dict | None, list[float] | None, dict | None]:
    from tla.policies.registry import policy_config

    cfg = policy_config(policy)
    scale = (cfg or {}).get("scale")
    keys = ("modality", "image_size", "input_format", "composite_size")
    model_input = {k: cfg[k] for k in keys if cfg and k in cfg} or None
    return cfg, list(scale) if scale is not None else None, model_input


def create_app(policy, settings: ServeSettings | None = None, run: str | None = None) -> FastAPI:
    """The server for an already loaded policy (anything with `name` and `predict`)."""
    s = settings or ServeSettings()
    batcher = MicroBatcher(policy, s.max_batch, s.max_wait_ms)
    decoding = threading.BoundedSemaphore(max(1, s.max_decodes_in_flight))
    started = time.time()
    config, scale, model_input = _policy_info(policy)
    name = getattr(policy, "name", type(policy).__name__)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        batcher.close()

    app = FastAPI(title="TLA policy server", version="1", lifespan=lifespan,
                  description="Tactile peg-in-hole policy: 8 tactile frames + peg shape -> (dx mm, dy mm, drz deg).")
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", [])), "msg": f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}",
                   "type": e.get("type")} for e in exc.errors()]  # no echo of the (possibly huge) input
        return JSONResponse({"detail": errors}, status_code=422)

    @app.post("/act", response_model=ActResponse, responses={401: {}, 413: {}, 422: {}})
    def act(req: ActRequest, request: Request) -> ActResponse:
        t0 = getattr(request.state, "t_arrival", time.perf_counter())
        obs = observation(req, s, decoding)
        try:
            res = batcher.submit(obs, req.peg_shape()).result(timeout=s.predict_timeout_s)
        except FutureTimeout:
            raise HTTPException(503, detail="the policy did not answer in time") from None
        a = [float(v) for v in res.action]
        return ActResponse(action=Action(dx_mm=a[0], dy_mm=a[1], drz_deg=a[2]), action_list=a, text=res.text,
                           parse_ok=res.parse_ok, policy=name, shape=req.peg_shape(), request_id=req.request_id,
                           batch_size=res.batch_size, predict_ms=res.predict_ms, latency_ms=1000 * (time.perf_counter() - t0))

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(policy=name, uptime_s=time.time() - started, served=batcher.served, queued=batcher.queued)

    @app.get("/info", response_model=Info)
    def info() -> Info:
        fs = list(s.frame_size) if s.frame_size else None
        spec = getattr(policy, "observation_spec", None)
        return Info(policy=name, run=run, config=config, action_scale=scale, frame_size=fs, model_input=model_input,
                    observation=spec.to_dict() if spec is not None else None, limits=s.public())

    app.add_middleware(Guard, api_key=s.api_key, max_body_bytes=s.max_body_bytes)
    return app


def run_frame_size(run_dir: str | Path) -> tuple[int, int] | None:
    """(H, W) of the frames the run was trained on: run config.json -> dataset meta/info.json; None if unknown."""
    try:
        data = json.loads((Path(run_dir) / "config.json").read_text())["data"]
        image = json.loads((Path(data) / "meta" / "info.json").read_text())["image"]
        return int(image["height"]), int(image["width"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def app_from_run(run_dir: str | Path, settings: ServeSettings | None = None, warmup: bool = True):
    """Load any trained run once (`tla.policies.registry.load_policy`) and build its server; one warm-up
    prediction on a blank observation keeps torch's first-call cost off the first robot request."""
    from tla.policies.registry import load_policy
    from tla.sim.config import RenderConfig

    s = settings or ServeSettings()
    policy = load_policy(run_dir)
    if s.frame_size is None:  # the spec the run recorded, else (older runs) its training dataset's
        spec = policy.observation_spec
        s.frame_size = (spec.height, spec.width) if spec is not None else run_frame_size(run_dir)
    if warmup:
        h, w = s.frame_size or (RenderConfig.height, RenderConfig.width)
        policy.predict(np.zeros((1, NUM_FRAMES, h, w, 3), np.uint8), ["square"])
    return create_app(policy, s, run=str(run_dir))


@contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Run `app` with uvicorn in a thread (tests, benchmarks); yields its base URL, shuts it down on exit."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the policy server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
