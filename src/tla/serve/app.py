"""The policy server: a FastAPI app around one loaded policy and a micro-batcher.

Endpoints: POST /act (tactile frames or composite + shape -> action), GET /health, GET /info, plus the
OpenAPI schema (/openapi.json, /docs). Bad input always gets a 4xx whose message names the field:
  400  a body that is not parseable JSON text (not UTF-8, nested too deeply), an invalid Content-Length
  413  body over `max_body_bytes` (checked on Content-Length before reading, and while reading; a refused
       body up to 4x the limit is drained first, so the client reads the reply, not a reset)
  401  missing / wrong X-API-Key when the app has a key (every path but GET /health, which load balancers poll)
  422  JSON syntax and schema errors (pydantic), bad base64, not PNG/JPEG, bad json-numpy data, image sizes out
       of bounds (frames under `min_frame_side` = 16 px per side, or over the side / pixel limits), frames of
       unequal size, an instruction that names no single peg shape
OpenVLA-style requests (`schemas.OpenVLARequest`, `EncodedRequest`) are answered with OpenVLA's bare action
(json-numpy float64 [dx mm, dy mm, drz deg]; a JSON string of it for the `encoded` form, as OpenVLA's
deploy.py does); `?format=full` gives them the ActResponse, `?format=openvla` gives a native request the
bare action.
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
from typing import Literal

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import ValidationError

from tla.policies.base import PRIVILEGED, batch_for, policy_features, policy_name
from tla.serve import jsonnumpy
from tla.serve.batching import BatcherClosed, MicroBatcher
from tla.serve.schemas import (
    BODY_KINDS,
    MIN_FRAME_SIDE,
    ActBody,
    Action,
    ActRequest,
    ActResponse,
    EncodedRequest,
    ErrorMessage,
    Health,
    Info,
    NumpyAction,
    NumpyArray,
    NumpyImage,
    OpenVLARequest,
    ValidationErrors,
)
from tla.sim.compose import NUM_FRAMES


@dataclass
class ServeSettings:
    max_batch: int = 8  # requests per policy call
    max_wait_ms: float = 5.0  # how long the batcher waits to fill a batch
    max_body_bytes: int = 16 * 2**20  # 8 PNG frames of 240 x 320 are ~2.5 MB as base64
    max_image_side: int = 2048  # px, per decoded image (checked before decoding)
    min_frame_side: int = MIN_FRAME_SIDE  # px per side of a frame (composite: of a cell, so 3x for the image)
    # decoded pixels per image, checked from the header before decoding: 8 frames at 2048 x 2048 decode to
    # 100 MB per request; 1 MP holds a 616 px composite or frames 3x the paper's 240 x 320
    max_image_pixels: int = 1024 * 1024
    max_decodes_in_flight: int = 4  # requests decoding images at once (the others wait): bounds their memory
    predict_timeout_s: float = 120.0
    api_key: str | None = None  # when set, every request but GET /health needs the X-API-Key header
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
PUBLIC = {("GET", "/health")}  # answered without the API key: load balancers poll it


class Guard:
    """Pure ASGI middleware: API key check (all requests but PUBLIC), then the body byte limit (413 before
    the body is read)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.limit = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})["t_arrival"] = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and (scope.get("method"), scope.get("path")) not in PUBLIC:
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


def check_size(h: int, w: int, field: str, s: ServeSettings, min_side: int) -> None:
    """HTTP 422 when an image of h x w px is outside [min_side, max_image_side] per side or over max_image_pixels."""
    if not (min_side <= h <= s.max_image_side and min_side <= w <= s.max_image_side):
        raise _bad(field, f"image size {h}x{w} (HxW) outside [{min_side}, {s.max_image_side}] px per side")
    if h * w > s.max_image_pixels:
        raise _bad(field, f"image size {h}x{w} is {h * w} pixels, over the server's limit of {s.max_image_pixels}; "
                          f"send the frames at the sensor's resolution")


def decode_image(b64: str, field: str, s: ServeSettings, min_side: int | None = None) -> np.ndarray:
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
    check_size(h, w, field, s, s.min_frame_side if min_side is None else min_side)
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)  # header checked: decode (faster than PIL)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise _bad(field, "the image data is corrupt or truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_array(arr: NumpyArray, field: str, s: ServeSettings) -> np.ndarray:
    """A json-numpy image or frames array (dtype and shape already checked by the schema) -> uint8 array; the
    size limits apply per image, before decoding, as for PNG."""
    composite = isinstance(arr, NumpyImage)
    h, w = arr.shape[-3:-1]
    check_size(h, w, field, s, 3 * s.min_frame_side if composite else s.min_frame_side)
    try:
        return jsonnumpy.decode(arr.data, np.uint8, tuple(arr.shape))
    except ValueError as e:
        raise _bad(field, str(e)) from None


def split_composite(comp: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray:
    """3x3 composite (H, W, 3) -> (8, h, w, 3): equal cells H // 3 x W // 3, resized to `frame_size`."""
    ch, cw = comp.shape[0] // 3, comp.shape[1] // 3
    cells = [comp[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] for r, c in (divmod(i, 3) for i in range(NUM_FRAMES))]
    if frame_size is not None and tuple(frame_size) != (ch, cw):
        h, w = frame_size
        interp = cv2.INTER_AREA if h <= ch and w <= cw else cv2.INTER_LINEAR
        cells = [cv2.resize(c, (w, h), interpolation=interp) for c in cells]
    return np.ascontiguousarray(np.stack(cells))


def observation(req: ActRequest | OpenVLARequest, s: ServeSettings, gate: threading.BoundedSemaphore | None = None) -> np.ndarray:
    """The request's images decoded into one observation; `gate` bounds how many requests decode at once."""
    with gate or contextlib.nullcontext():
        return _decode_observation(req, s)


def _decode_observation(req: ActRequest | OpenVLARequest, s: ServeSettings) -> np.ndarray:
    if isinstance(req, OpenVLARequest):
        if req.image is not None:
            return split_composite(decode_array(req.image, "image", s), s.frame_size)
        return np.array(decode_array(req.frames, "frames", s))  # type: ignore[arg-type]
    if req.composite is not None:
        return split_composite(decode_image(req.composite, "composite", s, 3 * s.min_frame_side), s.frame_size)
    frames = [decode_image(f, f"frames[{i}]", s) for i, f in enumerate(req.frames or [])]
    for i, f in enumerate(frames[1:], 1):
        if f.shape != frames[0].shape:
            raise _bad(f"frames[{i}]", f"size {f.shape[0]}x{f.shape[1]} differs from frames[0] "
                                       f"({frames[0].shape[0]}x{frames[0].shape[1]}); all 8 frames must match")
    return np.stack(frames)


def parse_encoded(req: EncodedRequest) -> OpenVLARequest:
    """OpenVLA's {"encoded": "<JSON text>"} wrapper -> the request it holds; 422 naming the inner field."""
    try:
        inner = json.loads(req.encoded)
    except (ValueError, RecursionError):
        raise _bad("encoded", "not valid JSON text (an OpenVLA request: image, instruction)") from None
    try:
        return OpenVLARequest.model_validate(inner)
    except ValidationError as e:
        raise HTTPException(422, detail=[_error(["body", "encoded", *err["loc"]], err) for err in e.errors()]) from None


def _error(loc: list, err: dict) -> dict:
    """A pydantic error as the server reports it: loc, a message naming the field, type (no echo of input)."""
    return {"loc": loc, "msg": f"{'.'.join(map(str, loc))}: {err.get('msg')}", "type": err.get("type")}


def bare_action(action: np.ndarray, encoded: bool) -> NumpyAction | str:
    """OpenVLA's answer: the action as json-numpy (float64), as JSON text when the request was `encoded`."""
    arr = jsonnumpy.encode(np.asarray(action, dtype="<f8"))
    return json.dumps(arr) if encoded else NumpyAction.model_validate(arr)


_ERRORS = {
    400: ("the body is not parseable JSON text (not UTF-8, nested too deeply), or an invalid Content-Length", None),
    401: ("missing or wrong X-API-Key header", None),
    413: ("request body over the server's limit (`limits.max_body_bytes` in /info)", None),
    422: (("invalid request; `detail` names each field: JSON syntax; the schema's rules; base64 that is not a PNG "
           "or JPEG image; json-numpy data whose length does not match its shape; an image side under 16 px per "
           "frame (48 px for a composite) or over the server's `max_image_side` / `max_image_pixels` (/info "
           "`limits`); frames of unequal sizes; an instruction (without `shape`) that names no single peg shape"),
          ValidationErrors),
    503: ("the policy did not answer in time, or the server is shutting down", None),
}


def _responses(*codes: int) -> dict:
    return {c: {"description": _ERRORS[c][0], "model": _ERRORS[c][1] or ErrorMessage} for c in codes}


# ----------------------------------------------------------------------------------------------- app
def _policy_info(policy) -> tuple[dict | None, list[float] | None, dict | None]:
    from tla.policies.registry import policy_config

    cfg = policy_config(policy)
    scale = (cfg or {}).get("scale")
    keys = ("modality", "image_size", "input_format", "layout", "composite_size", "frame_size")
    model_input = {k: cfg[k] for k in keys if cfg and k in cfg} or None
    return cfg, list(scale) if scale is not None else None, model_input


def check_servable(policy) -> None:
    """A request carries the robot's observation and peg shape only, never the simulator's true state: a
    policy that declares a privileged feature (the oracle) cannot be served. One-line ValueError."""
    privileged = [k for k in policy_features(policy) if k in PRIVILEGED]
    if privileged:
        raise ValueError(f"the {policy_name(policy)} policy reads privileged simulator state {privileged}, "
                         "which a robot's request does not carry: it cannot be served")


def create_app(policy, settings: ServeSettings | None = None, run: str | None = None) -> FastAPI:
    """The server for an already loaded policy (a `tla.policies.base.Policy` without privileged features)."""
    check_servable(policy)
    s = settings or ServeSettings()
    batcher = MicroBatcher(policy, s.max_batch, s.max_wait_ms)
    decoding = threading.BoundedSemaphore(max(1, s.max_decodes_in_flight))
    started = time.time()
    config, scale, model_input = _policy_info(policy)
    name = getattr(policy, "name", type(policy).__name__)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()  # again, when a lifespan ends and a new one starts
        yield
        batcher.close()

    app = FastAPI(title="TLA policy server", version="1", lifespan=lifespan,
                  description="Tactile peg-in-hole policy: 8 tactile frames + peg shape -> (dx mm, dy mm, drz deg).")
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        errors = [_error(_untagged(list(e.get("loc", []))), e) for e in exc.errors()]  # no echo of the input
        return JSONResponse({"detail": errors}, status_code=422)

    # the key is checked by Guard; the scheme documents it (only when the server has a key)
    protected = [Security(APIKeyHeader(name="X-API-Key", auto_error=False))] if s.api_key else []
    keyed = (401,) if s.api_key else ()

    @app.post("/act", response_model=ActResponse | NumpyAction | str, dependencies=protected,
              responses=_responses(400, *keyed, 413, 422, 503),
              description="Native request (`ActRequest`) -> `ActResponse`; OpenVLA-style request (`OpenVLARequest`, "
                          "or its `encoded` wrapper) -> the bare action as OpenVLA answers it: json-numpy float64 "
                          "[dx mm, dy mm, drz deg] (a JSON string of it for `encoded`). `format` overrides: "
                          "`full` = ActResponse, `openvla` = the bare action.")
    def act(req: ActBody, request: Request,
            fmt: Literal["full", "openvla"] | None = Query(None, alias="format")) -> ActResponse | NumpyAction | str:
        t0 = getattr(request.state, "t_arrival", time.perf_counter())
        encoded = isinstance(req, EncodedRequest)
        if encoded:
            req = parse_encoded(req)
        obs = observation(req, s, decoding)
        try:
            res = batcher.submit(obs, req.peg_shape()).result(timeout=s.predict_timeout_s)
        except FutureTimeout:
            raise HTTPException(503, detail="the policy did not answer in time") from None
        except BatcherClosed as e:
            raise HTTPException(503, detail=str(e)) from None
        if (fmt or ("openvla" if isinstance(req, OpenVLARequest) else "full")) == "openvla":
            return bare_action(res.action, encoded)
        a = [float(v) for v in res.action]
        return ActResponse(action=Action(dx_mm=a[0], dy_mm=a[1], drz_deg=a[2]), action_list=a, text=res.text,
                           parse_ok=res.parse_ok, policy=name, shape=req.peg_shape(),
                           request_id=getattr(req, "request_id", None),
                           batch_size=res.batch_size, predict_ms=res.predict_ms, latency_ms=1000 * (time.perf_counter() - t0))

    @app.get("/health", response_model=Health, responses=_responses(400, 413))
    def health() -> Health:
        return Health(policy=name, uptime_s=time.time() - started, served=batcher.served, queued=batcher.queued)

    @app.get("/info", response_model=Info, dependencies=protected, responses=_responses(400, *keyed, 413))
    def info() -> Info:
        fs = list(s.frame_size) if s.frame_size else None
        spec = getattr(policy, "observation_spec", None)
        return Info(policy=name, run=run, config=config, action_scale=scale, frame_size=fs, model_input=model_input,
                    observation=spec.to_dict() if spec is not None else None, limits=s.public())

    app.add_middleware(Guard, api_key=s.api_key, max_body_bytes=s.max_body_bytes)
    return app


def _untagged(loc: list) -> list:
    """A request error's location without the union tag pydantic inserts (body.native.frames -> body.frames)."""
    return [loc[0], *loc[2:]] if len(loc) > 1 and loc[0] == "body" and loc[1] in BODY_KINDS else loc


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
    check_servable(policy)  # before the warm-up
    if s.frame_size is None:  # the spec the run recorded, else (older runs) its training dataset's
        spec = policy.observation_spec
        s.frame_size = (spec.height, spec.width) if spec is not None else run_frame_size(run_dir)
    if warmup:
        h, w = s.frame_size or (RenderConfig.height, RenderConfig.width)
        policy.predict(batch_for(policy, np.zeros((1, NUM_FRAMES, h, w, 3), np.uint8), ["square"]))
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
