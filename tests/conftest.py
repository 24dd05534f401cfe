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
