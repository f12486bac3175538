"""Request and response bodies of the policy server (pydantic; they make the OpenAPI schema).

A request carries either the 8 tactile frames (left t0..t3, right t0..t3; `tla.sim.compose`) or one 3x3
composite, each a base64 PNG or JPEG, plus the peg shape or a free instruction naming it. Structural
checks live here; decoding the images (format, size) happens in `tla.serve.app`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tla.sim.compose import NUM_FRAMES
from tla.sim.geometry import SHAPES

_SHAPE_WORD = re.compile(r"\b(" + "|".join(SHAPES) + r")\b", re.IGNORECASE)


def shape_from_instruction(text: str) -> str | None:
    """The peg shape a free instruction names ('insert the square peg' -> 'square'); None if none or several."""
    found = {m.lower() for m in _SHAPE_WORD.findall(text)}
    return found.pop() if len(found) == 1 else None


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: list[str] | None = Field(
        None, min_length=NUM_FRAMES, max_length=NUM_FRAMES,
        description="8 base64 PNG/JPEG tactile frames: left pad t0..t3, then right pad t0..t3 (RGB, same size). "
                    "Use PNG for bit-exact predictions.",
    )
    composite: str | None = Field(
        None, description="instead of `frames`: one base64 PNG/JPEG 3x3 composite (rows L0 L1 L2 / L3 R0 R1 / "
                          "R2 R3 white); it is split into 3x3 equal cells, which are resized to the run's frame size.",
    )
    shape: str | None = Field(None, description=f"peg shape, one of {', '.join(SHAPES)}")
    instruction: str | None = Field(
        None, max_length=1000, description="free instruction naming the peg shape, used when `shape` is absent",
    )
    request_id: str | None = Field(None, max_length=128, description="echoed back in the answer")

    @field_validator("shape")
    @classmethod
    def _known_shape(cls, v: str | None) -> str | None:
        if v is not None and v not in SHAPES:
            raise ValueError(f"unknown peg shape {v!r}; choose one of {', '.join(SHAPES)}")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> ActRequest:
        if (self.frames is None) == (self.composite is None):
            raise ValueError("give exactly one of `frames` (8 images) or `composite` (one image)")
        if self.shape is None:
            if self.instruction is None:
                raise ValueError("give `shape` (or an `instruction` naming the peg shape)")
            if shape_from_instruction(self.instruction) is None:
                raise ValueError(f"`instruction` must name exactly one peg shape ({', '.join(SHAPES)})")
        return self

    def peg_shape(self) -> str:
        return self.shape or shape_from_instruction(self.instruction or "")  # type: ignore[return-value]


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
