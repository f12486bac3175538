"""Python client of the policy server (`tla serve`), and the remote closed loop the simulator runs through it.

Frames travel as lossless PNG, so the server's policy sees exactly the arrays the client holds and a
remote episode replays the in-process one (`tla.eval.closed_loop`) bit for bit.
"""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np

from tla.policies.base import OBSERVATION, SHAPE, Prediction, check_batch
from tla.sim.compose import check_frames


def encode_png(rgb: np.ndarray, compression: int = 1) -> str:
    """uint8 RGB (H, W, 3) -> base64 PNG text."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"could not encode an image of shape {rgb.shape} as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


class PolicyError(RuntimeError):
    """The server answered with an error status; `status` and `detail` carry its answer."""

    def __init__(self, status: int, detail):
        super().__init__(f"policy server answered {status}: {detail}")
        self.status, self.detail = status, detail


class PolicyClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0):
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def _check(self, r: httpx.Response) -> dict:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise PolicyError(r.status_code, detail)
        return r.json()

    def act(self, frames: np.ndarray | None = None, shape: str | None = None, *, composite: np.ndarray | None = None,
            instruction: str | None = None, request_id: str | None = None) -> dict:
        """Frames uint8 (8, H, W, 3) (left t0..t3, right t0..t3) or a composite (H, W, 3) -> the server's answer:
        action {dx_mm, dy_mm, drz_deg}, action_list, text, parse_ok, policy, latency_ms, ..."""
        body: dict = {"shape": shape, "instruction": instruction, "request_id": request_id}
        if composite is not None:
            body["composite"] = encode_png(composite)
        else:
            body["frames"] = [encode_png(f) for f in check_frames(frames)]
        return self._check(self._http.post("/act", json={k: v for k, v in body.items() if v is not None}))

    def health(self) -> dict:
        return self._check(self._http.get("/health"))

    def info(self) -> dict:
        return self._check(self._http.get("/info"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemotePolicy:
    """A `Policy` whose predictions come from the server: drop-in for `run_episode` / the evaluators."""

    input_features = (OBSERVATION, SHAPE)  # what a request carries

    def __init__(self, client: PolicyClient):
        self.client = client
        self.name = client.info()["policy"]
        self.latencies_ms: list[float] = []

    def predict(self, batch: dict) -> Prediction:
        """batch: `observation` uint8 (B, 8, H, W, 3), `shape` B names; one request per row."""
        batch = check_batch(self, batch)
        answers = [self.client.act(obs, shape) for obs, shape in zip(batch[OBSERVATION], batch[SHAPE])]
        self.latencies_ms += [a["latency_ms"] for a in answers]
        texts = [a["text"] for a in answers]
        return Prediction(actions=np.array([a["action_list"] for a in answers], dtype=np.float64),
                          texts=texts if any(t is not None for t in texts) else None,
                          parse_ok=np.array([a["parse_ok"] for a in answers]))

    def save(self, directory) -> None:
        raise NotImplementedError("a remote policy lives on its server")


def run_remote(client: PolicyClient, shapes: list[str], clearances: list[float], episodes: int, base_seed: int = 0,
               sim_cfg=None) -> list:
    """Closed-loop episodes with the simulator as the robot and the server as the policy; the same seeds and
    record order as `tla.eval.closed_loop.run_closed_loop`, so the two give equal records for one policy."""
    from tla.eval.closed_loop import episode_seeds, run_episode
    from tla.sim.config import SimConfig
    from tla.sim.env import PegInHoleEnv

    policy, env = RemotePolicy(client), PegInHoleEnv(sim_cfg or SimConfig())
    return [run_episode(env, policy, seed, s, float(c))
            for s in shapes for c in clearances for seed in episode_seeds(base_seed, episodes)]
