"""Fixtures of the serving tests: one tiny quantized digits victim per session (a smallcnn
trained 2 epochs, then post-training quantized, by the real `divqat train`), one intra-op thread
for every module (the ``one_thread`` fixture of tests/conftest.py), and the key stores: a real
PostgreSQL server for the session (Debian's `postgresql`, started as the `postgres` user on
127.0.0.1 and a free port, stopped at the end even after a failure; fsync off, which only a
crash of PostgreSQL itself would notice) and ``key_db``, a new empty store of each kind."""
import subprocess

import pytest
import torch
from serving_helpers import BETA, module_store, new_key_db

from divqat.cli import main
from divqat.serving.key_stores import open_key_store
from divqat.serving.postgres_cluster import TemporaryPostgres


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


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session; the tests that need it skip, saying why, where none starts."""
    try:
        cluster = TemporaryPostgres({"fsync": "off"})
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory, request):
    """One SQLite key store for a module's server."""
    return module_store("sqlite", tmp_path_factory, request)


@pytest.fixture(params=["sqlite", "postgresql"])
def key_db(request, tmp_path_factory):
    """A new, empty key store's location, once for each kind."""
    return new_key_db(request.param, tmp_path_factory, request)


@pytest.fixture
def store(key_db):
    """A new key store (tables made) at ``key_db``, closed after the test."""
    store = open_key_store(key_db, create=True)
    yield store
    store.close()


@pytest.fixture(scope="session")
def model_file(tmp_path_factory, victim_dir):
    """The victim exported with DCP (beta 0.625) as one ONNX file, as `divqat export` writes it."""
    from divqat.serving.export import build_exportable_defense, export_defended
    from divqat.utils import atomic_write_bytes

    path = tmp_path_factory.mktemp("model") / "dcp.onnx"
    name, defense = build_exportable_defense("dcp", {"beta": BETA})
    atomic_write_bytes(export_defended(victim_dir, name, defense).SerializeToString(), path)
    return path


@pytest.fixture(scope="session")
def images():
    from divqat.data import load_tensors

    return load_tensors("digits", "test")[0]
