"""API keys, their query budgets and rate limits, in one SQLite database (stdlib sqlite3, WAL).

A key is a random token (``dqk_`` + 32 bytes of ``secrets.token_urlsafe``); the database stores
only its SHA-256 (a high-entropy random token needs no salt or slow hash: nothing short of
guessing 256 bits inverts it). Each row holds the key's budget (input rows it may ever have
answered), ``used`` (rows counted so far) and an optional rate limit R (requests per second,
a token bucket of capacity max(1, R) refilled at R per second).

Counting before answering: :meth:`KeyStore.charge` runs ``BEGIN IMMEDIATE`` (the database's
write lock, shared by every thread and process using the file), reads the key, refuses the
request if the key is unknown or revoked, if ``used + rows > budget`` or if the bucket is
empty, else adds ``rows`` to ``used`` and commits. The server answers only after the commit,
so with any number of threads and worker processes, and across a kill -9, answered <= counted
<= budget. Durability (``synchronous``): "FULL" (default) fsyncs the write-ahead log at every
commit, so a count also survives a power loss or an OS crash; "NORMAL" leaves the commit in
the OS page cache (fsync at checkpoints), which survives the death of the server process
(kill -9) but may lose the last counts to a power loss, and is about 800x cheaper per commit
on this project's disks (BENCHMARKS.md, Serving). The table's CHECK constraint
(used <= budget) makes the database refuse any other write.
"""
import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from divqat.checks import check_choice, check_int, check_real

__all__ = ["KeyStore", "Charge", "check_new_key", "hash_token", "TOKEN_PREFIX", "SYNCHRONOUS"]

TOKEN_PREFIX = "dqk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    budget     INTEGER NOT NULL CHECK (budget >= 0),
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= budget),
    rate       REAL CHECK (rate IS NULL OR rate > 0),
    tokens     REAL,
    refilled   REAL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL
)"""
# the monitors' side of the store (divqat.detection): per-key monitor state, alarms, key action
_MONITOR_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS monitor_state (key_id TEXT NOT NULL, monitor TEXT NOT NULL, state BLOB NOT NULL, "
    "updated_at REAL NOT NULL, PRIMARY KEY (key_id, monitor))",
    "CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY AUTOINCREMENT, key_id TEXT NOT NULL, "
    "monitor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL)",
)


def hash_token(token):
    """The stored form of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Charge:
    """The outcome of :meth:`KeyStore.charge`: ``status`` is "ok", "unauthorized", "budget" or "rate".

    ``used``/``budget`` are the key's counts after the request (known keys only);
    ``retry_after`` is the seconds until the rate limit admits a request ("rate" only).
    """
    status: str
    used: int = 0
    budget: int = 0
    retry_after: float = 0.0

    @property
    def left(self):
        return self.budget - self.used


def check_new_key(name, budget, rate=None):
    """ValueError naming the argument unless they make a valid key."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"NAME must be 1-64 letters, digits or _.@- (starting with a letter or digit), got {name!r}")
    check_int("--budget", budget, low=0)
    check_real("--rate", rate, low=0, low_open=True, optional=True)


SYNCHRONOUS = ("FULL", "NORMAL")


class KeyStore:
    """The key database at ``path``. ``create=True`` makes the file and table if absent;
    otherwise a missing file is a FileNotFoundError naming it. ``synchronous``: "FULL" or
    "NORMAL" (see the module docstring). One connection per thread."""

    def __init__(self, path, create=False, synchronous="FULL"):
        self.synchronous = check_choice("synchronous", synchronous, SYNCHRONOUS)
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"--db {self.path}: no key database there (create one with `divqat keys add`)")
        self._local = threading.local()
        with self._transaction() as db:
            db.execute(_SCHEMA)
            self._monitor_schema(db)

    def _connection(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            self._local.db = db
        return db

    def _transaction(self):
        return _Immediate(self._connection())

    def add(self, name, budget, rate=None):
        """Create key ``name`` with ``budget`` rows and an optional ``rate`` (requests/s); returns its token."""
        check_new_key(name, budget, rate)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM keys WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"NAME: a key named {name!r} already exists in {self.path}")
            db.execute("INSERT INTO keys (name, token_hash, budget, rate, tokens, refilled, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (name, hash_token(token), budget, rate, None if rate is None else max(1.0, rate), now, now))
        return token

    def revoke(self, name):
        """Revoke key ``name`` (ValueError if there is none); its count is kept."""
        with self._transaction() as db:
            if db.execute("UPDATE keys SET revoked = 1 WHERE name = ?", (name,)).rowcount == 0:
                raise ValueError(f"NAME: no key named {name!r} in {self.path}")

    def list(self):
        """Every key as a dict: name, used, budget, left, rate, revoked, created (oldest first)."""
        rows = self._connection().execute(
            "SELECT name, used, budget, rate, revoked, created FROM keys ORDER BY created, name").fetchall()
        return [{"name": n, "used": u, "budget": b, "left": b - u, "rate": r, "revoked": bool(v), "created": c}
                for n, u, b, r, v, c in rows]

    def usage(self, token):
        """``Charge`` of a zero-row request without touching the rate limit: the key's counts, or "unauthorized"."""
        row = self._connection().execute("SELECT used, budget, revoked FROM keys WHERE token_hash = ?",
                                          (hash_token(token),)).fetchone()
        if row is None or row[2]:
            return Charge("unauthorized")
        return Charge("ok", row[0], row[1])

    def charge(self, token, rows):
        """Count ``rows`` (>= 1) against the key of ``token`` in one write transaction, or refuse.

        Refusals change nothing: "unauthorized" (unknown or revoked token), "budget"
        (used + rows > budget), "rate" (the key's bucket is empty).
        """
        with self._transaction() as db:
            row = db.execute("SELECT name, used, budget, rate, tokens, refilled, revoked FROM keys "
                             "WHERE token_hash = ?", (hash_token(token),)).fetchone()
            if row is None or row[6]:
                return Charge("unauthorized")
            name, used, budget, rate, tokens, refilled, _ = row
            if used + rows > budget:
                return Charge("budget", used, budget)
            now = time.time()
            if rate is not None:
                tokens = min(max(1.0, rate), tokens + max(0.0, now - refilled) * rate)
                if tokens < 1.0:
                    return Charge("rate", used, budget, retry_after=(1.0 - tokens) / rate)
                tokens -= 1.0
            db.execute("UPDATE keys SET used = used + ?, tokens = ?, refilled = ? WHERE name = ?",
                       (rows, tokens, now, name))
            return Charge("ok", used + rows, budget)

    # --- monitors (divqat.detection): the store contract; key_id is the key's name ---------------

    @staticmethod
    def _monitor_schema(db):
        for statement in _MONITOR_SCHEMA:
            db.execute(statement)
        if "action" not in {row[1] for row in db.execute("PRAGMA table_info(keys)")}:
            db.execute("ALTER TABLE keys ADD COLUMN action TEXT")

    def key_id(self, token):
        """The key_id (name) of an active key's token, or None."""
        row = self._connection().execute("SELECT name FROM keys WHERE token_hash = ? AND revoked = 0",
                                          (hash_token(token),)).fetchone()
        return None if row is None else row[0]

    def monitor_states(self, key_id):
        """Every monitor's saved state of ``key_id``: {monitor: bytes}."""
        rows = self._connection().execute("SELECT monitor, state FROM monitor_state WHERE key_id = ?",
                                          (key_id,)).fetchall()
        return {monitor: bytes(state) for monitor, state in rows}

    def save_monitor_states(self, key_id, states):
        """Upsert ``states`` ({monitor: bytes}) of ``key_id`` in one transaction."""
        now = time.time()
        with self._transaction() as db:
            db.executemany("INSERT INTO monitor_state (key_id, monitor, state, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (key_id, monitor) DO UPDATE SET state = excluded.state, "
                           "updated_at = excluded.updated_at",
                           [(key_id, monitor, sqlite3.Binary(state), now) for monitor, state in states.items()])

    def record_alarm(self, key_id, monitor, action, detail):
        """Append an alarm of ``monitor`` on ``key_id`` (timestamped now)."""
        with self._transaction() as db:
            db.execute("INSERT INTO alarms (key_id, monitor, action, detail, at) VALUES (?, ?, ?, ?, ?)",
                       (key_id, monitor, action, detail, time.time()))

    def alarms(self, key_id):
        """The alarms of ``key_id``, oldest first: dicts with monitor, action, detail, at."""
        rows = self._connection().execute("SELECT monitor, action, detail, at FROM alarms WHERE key_id = ? "
                                          "ORDER BY id", (key_id,)).fetchall()
        return [{"monitor": m, "action": a, "detail": d, "at": t} for m, a, d, t in rows]

    def key_action(self, key_id):
        """The action in force on ``key_id`` ("labels", "block") or None."""
        row = self._connection().execute("SELECT action FROM keys WHERE name = ?", (key_id,)).fetchone()
        return None if row is None else row[0]

    def set_key_action(self, key_id, action):
        """Put ``action`` in force on ``key_id``."""
        with self._transaction() as db:
            db.execute("UPDATE keys SET action = ? WHERE name = ?", (action, key_id))


class _Immediate:
    """``with _Immediate(db)``: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
