import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # tests run 2 per machine (xdist) on 2 shared cores: more threads only oversubscribe (3x slower measured)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
