"""Shared test setup. TRITON_INTERPRET must be set before any @triton.jit function is defined,
so it is set here, before any test module imports a kernel."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: each op is too small to share between
    threads, and on a busy 2-core machine a second contending OpenMP thread makes them tens of
    times slower. Restores the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
