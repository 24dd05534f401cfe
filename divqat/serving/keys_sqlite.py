"""The key store in one SQLite file (stdlib sqlite3, WAL): the embedded default of `divqat serve`
and `divqat keys` (the contract: :mod:`divqat.serving.keys`).

A charge runs inside ``BEGIN IMMEDIATE`` (the database's write lock, shared by every thread and
process using the file): read the key, refuse it or add the rows, commit. The charges of one
process that wait for the lock meanwhile share the next transaction (:mod:`.group_commit`):
each is still checked against the counts its predecessors left, and each returns only after
the commit that holds it. Durability (``synchronous``): "FULL" (default) fsyncs the write-ahead
log at every commit, so a count also survives a power loss or an OS crash; "NORMAL" leaves the
commit in the OS page cache (fsync at checkpoints), which survives the death of the server
process (kill -9) but may lose the last counts to a power loss.

A new database file is created readable and writable by its owner only (0600; SQLite gives the
-wal and -shm files the database's permissions). SQLite's locks need a local file system: for
servers on several machines use PostgreSQL (:mod:`.keys_postgres`).
"""
import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from divqat.serving.group_commit import GroupCommit
from divqat.serving.keys import Charge, KeyStore, check_action, check_new_key, hash_token, new_token, refill

__all__ = ["SqliteKeyStore"]

_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS keys (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    budget     INTEGER NOT NULL CHECK (budget >= 0),
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= budget),
    rate       REAL CHECK (rate IS NULL OR rate > 0),
    tokens     REAL,
    refilled   REAL,
    revoked    INTEGER NOT NULL DEFAULT 0,
    created    REAL NOT NULL,
    action     TEXT CHECK (action IS NULL OR action IN ('labels', 'block'))
)""", """
CREATE TABLE IF NOT EXISTS monitor_state (
    key_id     INTEGER NOT NULL,
    monitor    TEXT NOT NULL,
    state      BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (key_id, monitor)
)""", """
CREATE TABLE IF NOT EXISTS alarms (
    id      INTEGER PRIMARY KEY,
    key_id  INTEGER NOT NULL,
    monitor TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    at      REAL NOT NULL
)""", "CREATE INDEX IF NOT EXISTS alarms_by_key ON alarms (key_id, id)")


class SqliteKeyStore(KeyStore):
    """The key database at ``path``. ``create=True`` makes the file (0600) and tables if absent;
    otherwise a missing file is a FileNotFoundError naming it. A path that is a directory, a file
    that is not a key database, or a file that cannot be created is a ValueError naming --db.
    ``synchronous``: "FULL" or "NORMAL" (see the module docstring). One connection per thread."""

    def __init__(self, path, create=False, synchronous="FULL"):
        self.synchronous = synchronous
        self.path = Path(path)
        self.location = str(self.path)
        if self.path.is_dir():
            raise ValueError(f"--db {self.path}: is a directory, not a key database")
        existed = self.path.is_file()
        if not create and not existed:
            raise FileNotFoundError(f"--db {self.path}: no key database there (create one with `divqat keys add`)")
        if not existed:
            self._create_private_file()
        self._local = threading.local()
        self._group = GroupCommit(self._charge_batch)
        try:
            if existed and self.path.stat().st_size > 0:
                self._check_key_database()
            with self._transaction() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"--db {self.path}: not a usable key database ({exc})") from None

    def _create_private_file(self):
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process created it a moment ago
            pass
        except OSError as exc:
            raise ValueError(f"--db {self.path}: cannot create the key database ({exc.strerror})") from None

    def _check_key_database(self):
        """ValueError unless the existing file holds divqat's keys table, looked at read-only
        (someone else's SQLite file is left as it was)."""
        with contextlib.closing(sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {row[1] for row in db.execute("PRAGMA table_info(keys)")}
        if "keys" not in tables:
            raise ValueError(f"--db {self.path}: an SQLite database without divqat's keys table, not a key database")
        if "action" not in columns:
            raise ValueError(f"--db {self.path}: a key database of an older divqat (no key ids); "
                             "create a new one with `divqat keys add`")

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
        check_new_key(name, budget, rate)
        token = new_token()
        now = time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM keys WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"NAME: a key named {name!r} already exists in {self.location}")
            db.execute("INSERT INTO keys (name, token_hash, budget, rate, tokens, refilled, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (name, hash_token(token), budget, rate, None if rate is None else max(1.0, rate), now, now))
        return token

    def revoke(self, name):
        with self._transaction() as db:
            if db.execute("UPDATE keys SET revoked = 1 WHERE name = ?", (name,)).rowcount == 0:
                raise ValueError(f"NAME: no key named {name!r} in {self.location}")

    def list(self):
        rows = self._connection().execute(
            "SELECT id, name, used, budget, rate, revoked, action, created FROM keys ORDER BY created, name")
        return [{"id": i, "name": n, "used": u, "budget": b, "left": b - u, "rate": r, "revoked": bool(v),
                 "action": a, "created": c} for i, n, u, b, r, v, a, c in rows.fetchall()]

    def usage(self, token):
        row = self._connection().execute("SELECT id, used, budget, revoked, action FROM keys WHERE token_hash = ?",
                                          (hash_token(token),)).fetchone()
        if row is None or row[3]:
            return Charge("unauthorized")
        return Charge("ok", row[1], row[2], key_id=row[0], action=row[4])

    def charge(self, token, rows):
        return self._group.submit((hash_token(token), rows))

    def _charge_batch(self, requests):
        """One transaction for a group of charges, each checked against the counts before it."""
        with self._transaction() as db:
            now = time.time()
            return [self._charge_one(db, token_hash, rows, now) for token_hash, rows in requests]

    @staticmethod
    def _charge_one(db, token_hash, rows, now):
        row = db.execute("SELECT id, used, budget, rate, tokens, refilled, revoked, action FROM keys "
                         "WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None or row[6]:
            return Charge("unauthorized")
        key_id, used, budget, rate, tokens, refilled, _, action = row
        if used + rows > budget:
            return Charge("budget", used, budget, key_id, action)
        if rate is not None:
            tokens = refill(rate, tokens, refilled, now)
            if tokens < 1.0:
                return Charge("rate", used, budget, key_id, action, retry_after=(1.0 - tokens) / rate)
            tokens -= 1.0
        db.execute("UPDATE keys SET used = used + ?, tokens = ?, refilled = ? WHERE id = ?",
                   (rows, tokens, now, key_id))
        return Charge("ok", used + rows, budget, key_id, action)

    def monitor_states(self, key_id):
        rows = self._connection().execute("SELECT monitor, state FROM monitor_state WHERE key_id = ?", (key_id,))
        return {monitor: bytes(state) for monitor, state in rows.fetchall()}

    def save_monitor_states(self, key_id, states):
        now = time.time()
        with self._transaction() as db:
            db.executemany("INSERT INTO monitor_state (key_id, monitor, state, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (key_id, monitor) DO UPDATE SET state = excluded.state, "
                           "updated_at = excluded.updated_at",
                           [(key_id, monitor, bytes(state), now) for monitor, state in states.items()])

    def record_alarm(self, key_id, monitor, action, detail):
        with self._transaction() as db:
            db.execute("INSERT INTO alarms (key_id, monitor, action, detail, at) VALUES (?, ?, ?, ?, ?)",
                       (key_id, monitor, action, detail, time.time()))

    def alarms(self, key_id):
        rows = self._connection().execute(
            "SELECT monitor, action, detail, at FROM alarms WHERE key_id = ? ORDER BY id", (key_id,))
        return [{"monitor": m, "action": a, "detail": d, "at": t} for m, a, d, t in rows.fetchall()]

    def key_action(self, key_id):
        row = self._connection().execute("SELECT action FROM keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else row[0]

    def set_key_action(self, key_id, action):
        check_action(action)
        with self._transaction() as db:
            if db.execute("UPDATE keys SET action = ? WHERE id = ?", (action, key_id)).rowcount == 0:
                raise ValueError(f"no key with id {key_id} in {self.location}")

    def close(self):
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


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
