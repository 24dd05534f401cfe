"""Shared by the tests/test_serving_*.py modules: one tiny quantized digits victim per test
process (a smallcnn trained 2 epochs, then post-training quantized, by the real `divqat train`)."""
import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from divqat.cli import main


@functools.lru_cache(maxsize=None)
def victim_dir():
    """The quantized (ptq) run directory, trained once per test process and removed at exit."""
    base = Path(tempfile.mkdtemp(prefix="divqat-serving-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        common = ["--dataset", "digits", "--arch", "smallcnn", "--no-progress", "--device", "cpu"]
        assert main(["train", *common, "--method", "fp", "--epochs", "2", "--out", str(base / "fp")]) == 0
        assert main(["train", *common, "--method", "ptq", "--teacher", str(base / "fp"),
                     "--out", str(base / "ptq")]) == 0
    finally:
        torch.set_num_threads(threads)
    return base / "ptq"
