"""A `divqat serve` in a child process on a free loopback port: for tests, the load and fault
benchmark, and anyone scripting a served victim.

    with ServerProcess("--victim", "model.onnx", "--db", "keys.db") as server:
        httpx.get(server.url + "/healthz")
        server.kill()           # kill -9, as a crash would
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

__all__ = ["ServerProcess", "free_port"]


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``divqat serve ARGV --port P`` (P free, host 127.0.0.1), started and answering /healthz
    when the constructor returns (RuntimeError with the server's output if it does not within
    ``timeout`` seconds). ``env``: extra environment variables. The server runs in its own
    process group, so :meth:`kill` and :meth:`stop` also end the worker processes of ``--workers``."""

    def __init__(self, *argv, timeout=120.0, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, "-m", "divqat.cli", "serve", *map(str, argv), "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            self._log.close()
            raise

    def _wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"divqat serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"divqat serve did not answer /healthz within {timeout:g} s: {self.output()}")

    def output(self):
        """Everything the server printed so far."""
        self._log.seek(0)
        return self._log.read()

    def kill(self):
        """kill -9 the server (and its workers) and reap it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:  # the group is gone already
            pass
        self.process.wait(30)

    def stop(self):
        """SIGTERM (uvicorn's graceful shutdown), kill -9 after 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # a worker left behind, or a server that ignored SIGTERM
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
