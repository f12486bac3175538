import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smoke_cfg():
    from tla.data.config import preset

    return preset("smoke")


@pytest.fixture(scope="session")
def smoke_ds(tmp_path_factory, smoke_cfg):
    """The smoke preset, built once with 2 workers; tests must not modify it."""
    from tla.data.build import build

    root = tmp_path_factory.mktemp("smoke") / "ds"
    info = build(smoke_cfg, root, workers=2, progress=False)
    return root, info
