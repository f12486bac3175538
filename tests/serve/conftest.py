import numpy as np
import pytest

from tla.serve.app import ServeSettings, app_from_run, background_server


@pytest.fixture(scope="session")
def bc_run(tmp_path_factory):
    """A tiny, untrained (deterministic) BC policy saved like a trained run's policy dir."""
    from tla.policies.bc.config import BCConfig
    from tla.policies.bc.policy import BCPolicy

    d = tmp_path_factory.mktemp("bc_run")
    BCPolicy(BCConfig(image_size=(24, 32), embedding_size=8, hidden_sizes=(8, 8, 8, 8), head_hidden=16)).save(d)
    return d


@pytest.fixture(scope="session")
def server(bc_run):
    """A real uvicorn server on 127.0.0.1 (free port) serving the tiny BC run; small body limit for the 413 test."""
    settings = ServeSettings(max_batch=4, max_wait_ms=2.0, max_body_bytes=2 * 2**20, max_image_side=512,
                             frame_size=(60, 80))
    with background_server(app_from_run(bc_run, settings)) as url:
        yield url


@pytest.fixture(scope="session")
def frames():
    return np.random.default_rng(0).integers(0, 256, (8, 60, 80, 3), dtype=np.uint8)
