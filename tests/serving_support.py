"""Shared by the tests/test_serving_*.py modules: one tiny quantized digits victim per test
process (a smallcnn trained 2 epochs, then post-training quantized, by the real `divqat train`),
and a real `divqat serve` process on a free loopback port."""
import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from divqat.cli import main

ROOT = Path(__file__).resolve().parents[1]


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
        assert main(["train", *common, "--method", "ptq", "--teacher", str(base / "fp"), "--out", str(base / "ptq")]) == 0
    finally:
        torch.set_num_threads(threads)
    return base / "ptq"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def divqat_cli(*argv, env=None, timeout=300):
    """Run `divqat ARGV` in a fresh interpreter; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "divqat.cli", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def add_key(db, name, budget, *extra):
    """`divqat keys add`: the token, read from the last line of its output."""
    done = divqat_cli("keys", "add", name, "--db", db, "--budget", budget, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


class Server:
    """`divqat serve ARGV --port P` in its own process; ``url``; ``kill()`` is kill -9."""

    def __init__(self, *argv):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, "-m", "divqat.cli", "serve", *map(str, argv),
                                         "--port", str(self.port)], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"divqat serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"divqat serve did not answer /healthz within 120 s: {self.output()}")

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def kill(self):
        """kill -9, then reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
