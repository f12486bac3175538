import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    # one intra-op thread: on the small shared CPU box OpenMP spin-waits make 2 threads several times slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
