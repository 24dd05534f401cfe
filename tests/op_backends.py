"""The op backends as pytest fixtures, shared by the op tests (import the fixtures by name):
each test runs once per backend, selected the user's way (``DIVQAT_BACKEND``), and first checks
that the backend asked for is the one that serves."""
import pytest
import torch

from divqat import _backend

BACKENDS = _backend.BACKENDS  # compiled, triton, reference
FUSED = ("compiled", "triton")


def use_backend(monkeypatch, name):
    """Select ``name`` for this test (the compiled kernels are the default: no variable)."""
    if name == "compiled":
        monkeypatch.delenv("DIVQAT_BACKEND", raising=False)
    else:
        monkeypatch.setenv("DIVQAT_BACKEND", name)
    assert _backend.select(torch.device("cpu")) == name


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """The name of the backend serving the test's CPU tensors."""
    use_backend(monkeypatch, request.param)
    return request.param


@pytest.fixture(params=FUSED)
def fused_ops(request, monkeypatch):
    """The op namespace of a fused backend (torch.ops.divqat or torch.ops.divqat_triton), selected."""
    use_backend(monkeypatch, request.param)
    return _backend.ops(request.param)
