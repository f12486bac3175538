"""Request and response bodies of the policy server (pydantic; they make the OpenAPI schema).

A request carries either the 8 tactile frames (left t0..t3, right t0..t3; `tla.sim.compose`) or one 3x3
composite, each a base64 PNG or JPEG, plus the peg shape or a free instruction naming it. Structural
checks live here; decoding the images (format, size) happens in `tla.serve.app`.

`/act` also takes OpenVLA's request (`vla-scripts/deploy.py` of openvla/openvla): {"image": json-numpy
(H, W, 3) uint8, "instruction": str, "unnorm_key": optional}, here the 3x3 composite (or "frames":
json-numpy (8, h, w, 3)), and its {"encoded": "<that request as JSON text>"} wrapper. The schema states
every structural rule (exactly one input, the frame count, the enum of shapes, base64, array shapes
and dtype), so a body valid under it is answered 200 or refused for a reason the 422 description lists.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from tla.sim.compose import NUM_FRAMES
from tla.sim.geometry import SHAPES

MIN_FRAME_SIDE = 16  # px: smaller frames (or composite cells) carry no usable contact image
# base64 with correct padding: exactly what base64.b64decode(..., validate=True) accepts
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
UINT8_DESCRS = ("|u1", "<u1", ">u1", "u1", "uint8")  # json-numpy writes "|u1"
_IMAGE_TEXT = {"type": "string", "pattern": BASE64_PATTERN, "contentEncoding": "base64"}
# text naming a peg shape as a word, any case (the schema's form of shape_from_instruction; JSON Schema
# patterns have no flags); naming two different shapes is refused at run time (documented 422)
_NAMES_A_SHAPE = (r"(^|[^A-Za-z0-9_])("
                  + "|".join("".join(f"[{c.lower()}{c.upper()}]" for c in w) for w in SHAPES) + r")([^A-Za-z0-9_]|$)")

_SHAPE_WORD = re.compile(r"\b(" + "|".join(SHAPES) + r")\b", re.IGNORECASE)


def shape_from_instruction(text: str) -> str | None:
    """The peg shape a free instruction names ('insert the square peg' -> 'square'); None if none or several."""
    found = {m.lower() for m in _SHAPE_WORD.findall(text)}
    return found.pop() if len(found) == 1 else None


def _absent_not_null(schema: dict) -> None:
    """Optional fields as "absent or a value" in the schema (the server also takes null for absent)."""
    for prop in schema.get("properties", {}).values():
        options = prop.pop("anyOf", None)
        if options:
            prop.update(next(o for o in options if o.get("type") != "null"))
        if prop.get("default", 0) is None:
            del prop["default"]


def _act_request_schema(schema: dict) -> None:
    _absent_not_null(schema)
    schema["properties"]["frames"]["items"] = _IMAGE_TEXT
    schema["properties"]["composite"].update(_IMAGE_TEXT)
    schema["oneOf"] = [{"required": ["frames"]}, {"required": ["composite"]}]
    schema["anyOf"] = [{"required": ["shape"]},
                       {"required": ["instruction"], "properties": {"instruction": {"pattern": _NAMES_A_SHAPE}}}]


def _known_shape(v: Any) -> Any:
    if isinstance(v, str) and v not in SHAPES:
        raise ValueError(f"unknown peg shape {v!r}; choose one of {', '.join(SHAPES)}")
    return v


def _names_one_shape(text: str) -> str:
    if shape_from_instruction(text) is None:
        raise ValueError(f"`instruction` must name exactly one peg shape ({', '.join(SHAPES)})")
    return text


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_act_request_schema)

    frames: list[str] | None = Field(
        None, min_length=NUM_FRAMES, max_length=NUM_FRAMES,
        description="8 base64 PNG/JPEG tactile frames: left pad t0..t3, then right pad t0..t3 (RGB, same size). "
                    "Use PNG for bit-exact predictions.",
    )
    composite: str | None = Field(
        None, description="instead of `frames`: one base64 PNG/JPEG 3x3 composite (rows L0 L1 L2 / L3 R0 R1 / "
                          "R2 R3 white); it is split into 3x3 equal cells, which are resized to the run's frame size.",
    )
    shape: Literal[SHAPES] | None = Field(None, description=f"peg shape, one of {', '.join(SHAPES)}")
    instruction: str | None = Field(
        None, max_length=1000, description="free instruction naming the peg shape, used when `shape` is absent",
    )
    request_id: str | None = Field(None, max_length=128, description="echoed back in the answer")

    _shape = field_validator("shape", mode="before")(_known_shape)  # a clearer message than the enum's

    @model_validator(mode="after")
    def _one_input(self) -> ActRequest:
        if (self.frames is None) == (self.composite is None):
            raise ValueError("give exactly one of `frames` (8 images) or `composite` (one image)")
        if self.shape is None:
            if self.instruction is None:
                raise ValueError("give `shape` (or an `instruction` naming the peg shape)")
            _names_one_shape(self.instruction)
        return self

    def peg_shape(self) -> str:
        return self.shape or shape_from_instruction(self.instruction or "")  # type: ignore[return-value]


# ------------------------------------------------------------------------------- OpenVLA-style request
class NumpyArray(BaseModel):
    """A json-numpy array: {"__numpy__": base64 of the C-order bytes, "dtype": numpy descr, "shape": [...]}.
    Subclasses fix the shape: `DIMS` is the template (an int: that size; None: a side of at least `MIN_SIDE`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    DIMS: ClassVar[tuple[int | None, ...]] = ()
    MIN_SIDE: ClassVar[int] = MIN_FRAME_SIDE

    data: str = Field(alias="__numpy__", description="base64 of the array's bytes (C order)",
                      json_schema_extra={"pattern": BASE64_PATTERN, "contentEncoding": "base64"})
    dtype: Literal[UINT8_DESCRS] = Field(description="numpy dtype descr: uint8 pixels ('|u1', as json-numpy writes)")
    shape: list[int]

    @field_validator("dtype", mode="before")
    @classmethod
    def _uint8(cls, v: Any) -> Any:
        if v not in UINT8_DESCRS:
            raise ValueError(f"dtype {v!r} is not accepted: send uint8 pixels (json-numpy dtype '|u1')")
        return v

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int]) -> list[int]:
        ok = len(v) == len(cls.DIMS) and all(d == w if w is not None else d >= cls.MIN_SIDE
                                             for d, w in zip(v, cls.DIMS))
        if not ok:
            raise ValueError(f"shape {v} is not {cls.shape_text()} with sides of at least {cls.MIN_SIDE} px")
        return v

    @classmethod
    def shape_text(cls) -> str:
        return "(" + ", ".join("H" if i == len(cls.DIMS) - 3 else "W" if d is None else str(d)
                               for i, d in enumerate(cls.DIMS)) + ")"

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler.resolve_ref_schema(handler(core_schema))
        dims = [{"type": "integer", "minimum": cls.MIN_SIDE} if d is None else {"const": d} for d in cls.DIMS]
        schema["properties"]["shape"].update(prefixItems=dims, minItems=len(dims), maxItems=len(dims))
        return schema


class NumpyImage(NumpyArray):
    """The 3x3 tactile composite (H, W, 3) uint8: cells H // 3 x W // 3 of at least 16 px per side."""

    DIMS = (None, None, 3)
    MIN_SIDE = 3 * MIN_FRAME_SIDE


class NumpyFrames(NumpyArray):
    """The 8 tactile frames (8, H, W, 3) uint8, left t0..t3 then right t0..t3."""

    DIMS = (NUM_FRAMES, None, None, 3)


def _openvla_schema(schema: dict) -> None:
    _absent_not_null(schema)
    schema["oneOf"] = [{"required": ["image"]}, {"required": ["frames"]}]
    schema["properties"]["instruction"]["pattern"] = _NAMES_A_SHAPE


class OpenVLARequest(BaseModel):
    """OpenVLA's /act request: the image (here the 3x3 composite) as a json-numpy array."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_openvla_schema)

    image: NumpyImage | None = Field(None, description="json-numpy (H, W, 3) uint8 3x3 composite")
    frames: NumpyFrames | None = Field(None, description="instead of `image`: json-numpy (8, H, W, 3) uint8 frames")
    instruction: str = Field(max_length=1000, description="instruction naming the peg shape")
    unnorm_key: str | None = Field(None, max_length=256, description="accepted for OpenVLA clients and ignored: a "
                                                                      "run has one action scale")

    _instruction = field_validator("instruction")(_names_one_shape)

    @model_validator(mode="after")
    def _one_input(self) -> OpenVLARequest:
        if (self.image is None) == (self.frames is None):
            raise ValueError("give exactly one of `image` (json-numpy composite) or `frames` (json-numpy frames)")
        return self

    def peg_shape(self) -> str:
        return shape_from_instruction(self.instruction)  # type: ignore[return-value]


class EncodedRequest(BaseModel):
    """OpenVLA's wrapper for clients without json-numpy: the request as JSON text in one field."""

    model_config = ConfigDict(extra="forbid")

    encoded: str = Field(description="an OpenVLA request (`OpenVLARequest`) as JSON text",
                         json_schema_extra={"contentMediaType": "application/json"})


def body_kind(v: Any) -> str:
    """Which request form a body is: 'encoded', 'openvla' (has `image` or json-numpy `frames`), else 'native'."""
    if isinstance(v, dict):
        if "encoded" in v:
            return "encoded"
        if "image" in v or isinstance(v.get("frames"), dict):
            return "openvla"
    return "native"


BODY_KINDS = ("native", "openvla", "encoded")
ActBody = Annotated[Annotated[ActRequest, Tag("native")] | Annotated[OpenVLARequest, Tag("openvla")]
                    | Annotated[EncodedRequest, Tag("encoded")], Discriminator(body_kind)]


class Action(BaseModel):
    dx_mm: float
    dy_mm: float
    drz_deg: float


class ActResponse(BaseModel):
    action: Action
    action_list: list[float] = Field(description="[dx mm, dy mm, drz deg]")
    text: str | None = Field(None, description="raw generated text (TLA); null for regression policies")
    parse_ok: bool = Field(True, description="False when the text did not parse (a zero action is returned)")
    policy: str
    shape: str
    request_id: str | None = None
    batch_size: int = Field(description="requests served by the same policy call")
    predict_ms: float = Field(description="duration of the policy call (the whole batch)")
    latency_ms: float = Field(description="server time from the request's arrival to the answer")


class NumpyAction(BaseModel):
    """The bare action [dx mm, dy mm, drz deg] as a json-numpy float64 array (OpenVLA's answer)."""

    model_config = ConfigDict(populate_by_name=True)

    data: str = Field(alias="__numpy__", description="base64 of 3 little-endian float64")
    dtype: Literal["<f8"]
    shape: list[Literal[3]] = Field(min_length=1, max_length=1)


class ErrorMessage(BaseModel):
    detail: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(description="where: 'body' then the field path")
    msg: str = Field(description="the field and what is wrong with it")
    type: str | None = None


class ValidationErrors(BaseModel):
    detail: list[ValidationErrorItem]


class Health(BaseModel):
    status: str = "ok"
    policy: str
    uptime_s: float
    served: int
    queued: int


class Info(BaseModel):
    policy: str
    run: str | None
    config: dict | None
    action_units: list[str] = ["mm", "mm", "deg"]
    action_scale: list[float] | None = Field(None, description="action-text scale (TLA)")
    frame_size: list[int] | None = Field(None, description="[H, W] of the run's training frames (null: unknown)")
    model_input: dict | None = Field(
        None, description="what the policy reads: its modality (rgb = camera frames; marker_flow / depth = the "
                          "fields rendered as images by tla.sim.modality.render_field) and the size it resizes to")
    observation: dict | None = Field(
        None, description="the observation spec the run was trained on (height, width, modality, pads, steps); "
                          "null for runs of older versions")
    frame_order: str = "left t0..t3, right t0..t3; composite rows L0 L1 L2 / L3 R0 R1 / R2 R3 white"
    shapes: list[str] = list(SHAPES)
    limits: dict
