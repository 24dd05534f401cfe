"""Fixtures of the serving tests: one tiny quantized digits victim per session (a smallcnn
trained 2 epochs, then post-training quantized, by the real `divqat train`), and one intra-op
thread for every module (the ``one_thread`` fixture of tests/conftest.py)."""
import pytest
import torch

from divqat.cli import main


@pytest.fixture(scope="module", autouse=True)
def _one_intra_op_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def victim_dir(tmp_path_factory):
    """The quantized (ptq) `divqat train --out` directory; its fp teacher is the sibling "fp"."""
    base = tmp_path_factory.mktemp("victim")
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
