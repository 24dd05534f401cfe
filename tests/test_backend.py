"""divqat._backend: the backend names, and how divqat is installed and imported."""
import os
import subprocess
import sys

import pytest
import torch

from divqat import _backend


@pytest.mark.parametrize("name,serves", [("compiled", "compiled"), ("cuda", "compiled"), ("reference", "reference"),
                                         ("torch", "reference"), (" Reference ", "reference")])
def test_backend_names_and_former_names(monkeypatch, name, serves):
    """DIVQAT_BACKEND names what it selects; the former names cuda and torch still work."""
    monkeypatch.setenv("DIVQAT_BACKEND", name)
    assert _backend.select(torch.device("cpu")) == serves


def test_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("DIVQAT_BACKEND", "fast")
    with pytest.raises(ValueError, match="DIVQAT_BACKEND must be one of"):
        _backend.select(torch.device("cpu"))


def _python(code, cwd):
    """Run ``code`` in a fresh interpreter outside the repository (so that only what is
    installed can be imported), without DIVQAT_BACKEND or TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k not in ("DIVQAT_BACKEND", "TRITON_INTERPRET", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_extension_imports_without_importing_torch_first(tmp_path):
    """`import divqat._C` alone: divqat imports torch (which loads libc10) before its extension."""
    result = _python("import divqat._C, torch; print(hasattr(torch.ops.divqat, 'fake_quant'))", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_only_divqat_is_installed_at_the_top_level(tmp_path):
    """The Triton kernels install inside the package (divqat.triton_kernels), not as a top-level
    triton_kernels, the name of a package the Triton project publishes."""
    result = _python("import importlib.util as u; print(u.find_spec('triton_kernels') is None, "
                     "u.find_spec('divqat.triton_kernels') is not None)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_triton_kernels_that_do_not_load_are_named(monkeypatch):
    """DIVQAT_BACKEND=triton with kernels that cannot be imported (e.g. an install that predates
    divqat.triton_kernels): a RuntimeError that says why, not a missing-op AttributeError."""
    monkeypatch.setenv("DIVQAT_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(_backend._MODULES, "triton", (("divqat.no_such_kernels",), "divqat_triton"))
    monkeypatch.delitem(_backend._loaded, "triton", raising=False)
    with pytest.warns(RuntimeWarning, match="no_such_kernels"):
        with pytest.raises(RuntimeError, match="Triton kernels did not load .*no_such_kernels"):
            _backend.select(torch.device("cpu"))
