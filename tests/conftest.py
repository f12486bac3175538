import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # `import scaffold` from any test folder

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_cfg():
    from tla.data.config import preset

    return preset("smoke")


@pytest.fixture(scope="session")
def smoke_ds(tmp_path_factory, smoke_cfg):
    """The smoke preset, built once per test process with 2 workers (every folder shares it); tests
    must not modify it."""
    from tla.data.build import build

    root = tmp_path_factory.mktemp("smoke") / "ds"
    info = build(smoke_cfg, root, workers=2, progress=False)
    return root, info
