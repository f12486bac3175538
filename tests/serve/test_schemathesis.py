"""A real OpenAPI fuzzer (schemathesis) against the app in process (ASGI, no network): requests generated
from /openapi.json, valid and invalid under it, never get a 5xx; every status is documented and every answer
matches its documented schema. schemathesis' pytest plugin (`from_fixture`) fails on pytest 9 (it sets
`node._nodeid`), so the operations' Hypothesis strategies are driven directly."""

import json

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")

from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tla.client import encode_png
from tla.policies.registry import load_policy
from tla.serve import jsonnumpy
from tla.serve.app import ServeSettings, create_app

KEY = "fuzz-key"
OPERATIONS = [("POST", "/act"), ("GET", "/health"), ("GET", "/info")]
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.status_code_conformance,
          schemathesis.checks.response_schema_conformance, schemathesis.checks.content_type_conformance]
EXAMPLES = {"POST": 100, "GET": 5}  # bounded: the whole file runs in ~20 s on 2 busy cores


@pytest.fixture(scope="module")
def api_schema(bc_run):
    s = ServeSettings(max_batch=4, max_wait_ms=1.0, max_body_bytes=2 * 2**20, max_image_side=512,
                      frame_size=(60, 80), api_key=KEY, predict_timeout_s=10.0)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(load_policy(bc_run), s),
                                          headers={"X-API-Key": KEY})


def test_schema_lists_the_operations_and_the_key(api_schema):
    ops = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert ops == set(OPERATIONS)
    raw = api_schema.raw_schema
    assert raw["components"]["securitySchemes"]["APIKeyHeader"] == {"type": "apiKey", "in": "header",
                                                                    "name": "X-API-Key"}
    assert "security" not in raw["paths"]["/health"]["get"] and raw["paths"]["/act"]["post"]["security"]
    assert {"400", "401", "413", "422"} <= set(raw["paths"]["/act"]["post"]["responses"])


@pytest.mark.parametrize("method, path, mode", [
    *[(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS],
    ("POST", "/act", GenerationMode.NEGATIVE),  # the GETs have no input that could be invalid
])
def test_openapi_fuzz(api_schema, method, path, mode):
    op = api_schema[path][method]

    @settings(max_examples=EXAMPLES[method], deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzz(case):
        case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("body, query", [
    ("native", None), ("native", {"format": "openvla"}), ("openvla", None), ("openvla", {"format": "full"}),
    ("encoded", None),
])
def test_answers_match_the_documented_schema(api_schema, body, query):
    """Random bodies rarely hold a decodable image: the 200 answers of each form are checked here."""
    frames = np.random.default_rng(1).integers(0, 256, (8, 60, 80, 3), dtype=np.uint8)
    openvla = {"frames": jsonnumpy.encode(frames), "instruction": "insert the round peg"}
    bodies = {"native": {"frames": [encode_png(f) for f in frames], "shape": "round"}, "openvla": openvla,
              "encoded": {"encoded": json.dumps(openvla)}}
    case = api_schema["/act"]["POST"].Case(body=bodies[body], query=query, media_type="application/json")
    r = case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)
    assert r.status_code == 200
