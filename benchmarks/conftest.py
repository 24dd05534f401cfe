"""Shared benchmark setup: the run's environment in the report header (quote it with the numbers)
and a fixture that pins the CPU thread count for a module."""
import os

import pytest
import torch


def pytest_report_header(config):
    malloc = {k: os.environ.get(k, "unset") for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return [f"divqat benchmarks: torch {torch.__version__}, {torch.get_num_threads()} threads, gpu {gpu}, {malloc}"]


@pytest.fixture(scope="module")
def cpu_threads(request):
    """Run the module's CPU benchmarks with ``cpu_threads_count`` (module attribute, default 2)
    threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(getattr(request.module, "cpu_threads_count", 2))
    yield torch.get_num_threads()
    torch.set_num_threads(before)
