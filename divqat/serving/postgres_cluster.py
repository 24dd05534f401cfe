"""A throwaway PostgreSQL server: a new cluster in a temporary directory, listening on 127.0.0.1
and a free port, for the tests and the load benchmark of the PostgreSQL key store.

    with TemporaryPostgres() as pg:
        url = pg.create_database("keys")        # postgresql://postgres@127.0.0.1:PORT/keys
        ...                                     # stopped and deleted on exit, even after an error

It runs Debian's server binaries (``apt-get install postgresql``: initdb and pg_ctl, found on
PATH or under /usr/lib/postgresql/VERSION/bin) as the invoking user, or, for root (which
PostgreSQL refuses to run as), as the ``postgres`` user the Debian package creates. Trust
authentication on loopback: for tests only.
"""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from divqat.serving.process import free_port

__all__ = ["TemporaryPostgres", "server_binaries"]


def server_binaries():
    """The directory of PostgreSQL's initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


class TemporaryPostgres:
    """A running cluster (see the module docstring); RuntimeError with the reason if it cannot
    start. ``settings``: extra server settings, e.g. {"fsync": "off"} for tests."""

    def __init__(self, settings=None):
        self.bin = server_binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed "
                               "(Debian: apt-get install postgresql)")
        self.user = self._server_user()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="divqat-postgres-"))
        self._started = False
        try:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            self._run("initdb", "-D", self.dir / "data", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--locale", "C", "--no-sync")
            options = [f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
                       *(f"-c {key}={value}" for key, value in (settings or {}).items())]
            self._run("pg_ctl", "-D", self.dir / "data", "-l", self.dir / "server.log", "-o", " ".join(options),
                      "-w", "-t", "60", "start")
            self._started = True
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _server_user():
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and no 'postgres' user to run the server as") from None

    def _run(self, program, *argv):
        as_other = self.user.pw_uid != os.geteuid()
        result = subprocess.run([str(self.bin / program), *map(str, argv)], cwd=self.dir, capture_output=True,
                                text=True, timeout=120, env={**os.environ, "LC_ALL": "C"},
                                user=self.user.pw_uid if as_other else None,
                                group=self.user.pw_gid if as_other else None)
        if result.returncode != 0:
            log = self.dir / "server.log"
            detail = (result.stderr or result.stdout).strip()
            if log.is_file():
                detail += " " + log.read_text(errors="replace")[-500:]
            raise RuntimeError(f"{program} failed: {detail}")
        return result

    def url(self, dbname="postgres"):
        """The URL of database ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname):
        """Create database ``dbname`` (letters, digits, _) and return its URL."""
        import psycopg

        if not dbname.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and _, got {dbname!r}")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {dbname}")
        return self.url(dbname)

    def stop(self):
        """Stop the server (fast shutdown) and delete its directory; safe to call twice."""
        if self._started:
            self._started = False
            try:
                self._run("pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
