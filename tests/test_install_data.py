"""scripts/fetch_fashion_mnist.sh without root: run as the unprivileged user `nobody`, it fetches
Debian's dataset-fashion-mnist with apt-get download + dpkg -x into $DIVQAT_DATA/fashion-mnist,
and divqat's loader reads the same images there as from the system install."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from divqat.data import load_tensors

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fetch_fashion_mnist.sh"


def _can_run_as_nobody():
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("su", "apt-get", "dpkg")):
        return False
    known = subprocess.run(["apt-cache", "show", "dataset-fashion-mnist"], capture_output=True)
    return known.returncode == 0


@pytest.fixture
def nobody_dir():
    """A directory `nobody` can enter and write (pytest's tmp_path sits under a root-only folder)."""
    path = Path(tempfile.mkdtemp(prefix="divqat-nobody-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(not _can_run_as_nobody(), reason="needs root (to become nobody), apt-get and the package lists")
def test_fetch_without_root_then_load(nobody_dir, monkeypatch):
    tmp_path = nobody_dir
    script = tmp_path / "fetch.sh"
    shutil.copy(SCRIPT, script)
    data = tmp_path / "data"
    command = f"cd {tmp_path} && HOME={tmp_path} DIVQAT_DATA={data} bash {script} --user && id -u"
    done = subprocess.run(["su", "nobody", "-s", "/bin/bash", "-c", command], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] != "0"  # really not root
    target = data / "fashion-mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"])
    assert all(p.stat().st_uid != 0 for p in target.iterdir())
    monkeypatch.setenv("DIVQAT_DATA", str(data))
    x, y = load_tensors("fashion-mnist", "test", limit=500)
    assert x.shape == (500, 1, 28, 28) and y.shape == (500,)
    again = subprocess.run(["su", "nobody", "-s", "/bin/bash", "-c", command], capture_output=True, text=True)
    assert again.returncode == 0 and "installed" not in again.stdout  # already there: nothing to do
    system = Path("/usr/share/datasets/fashion-mnist")
    if system.is_dir():  # the same files as the root install
        xs, ys = load_tensors("fashion-mnist", "test", root=system, limit=500)
        assert torch.equal(x, xs) and torch.equal(y, ys)


def test_without_apt_it_says_where_to_put_the_files(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mkdir", "id", "mktemp", "rm", "cp", "mv"):
        path = shutil.which(tool)
        if path:
            (bin_dir / tool).symlink_to(path)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "DIVQAT_DATA": str(tmp_path / "d")}
    done = subprocess.run([str(bin_dir / "bash"), str(SCRIPT), "--user"], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "no apt-get/dpkg" in done.stderr and str(tmp_path / "d" / "fashion-mnist") in done.stderr
