"""The key store in a PostgreSQL database (psycopg 3, a psycopg_pool connection pool): one store
for `divqat serve` replicas on many machines (the contract: :mod:`divqat.serving.keys`).

    divqat keys add alice --db postgresql://divqat@db.internal/keys --budget 10000
    divqat serve --victim model.onnx --db postgresql://divqat@db.internal/keys

The whole budget protocol is one statement, its own transaction::

    UPDATE keys SET used = used + n, <the rate bucket> WHERE token_hash = ... AND NOT revoked
        AND used <= budget - n AND <a token in the bucket> RETURNING id, used, budget, action

PostgreSQL locks the row, re-checks the condition against the latest committed count (READ
COMMITTED re-evaluates an UPDATE's WHERE on the newest row version), and the charge returns
after the COMMIT: no replica can take a key past its budget, and a row is answered only once
counted. A refused charge (no row returned) is read back once to say why. Times (the rate
bucket, alarms) are the database's clock, so replicas with skewed clocks agree. Durability
(``synchronous``): "FULL" commits with ``synchronous_commit=on`` (the WAL is flushed before the
charge returns); "NORMAL" with ``synchronous_commit=off`` (a crash of the PostgreSQL server may
lose the last fraction of a second of counts; a crash of `divqat serve` loses nothing).
Concurrent commits share WAL flushes (PostgreSQL's own group commit).
"""
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from divqat.checks import error_line
from divqat.serving.keys import Charge, KeyStore, check_action, check_new_key, hash_token, new_token

__all__ = ["PostgresKeyStore", "display_url"]

_NOW = "EXTRACT(EPOCH FROM statement_timestamp())::float8"
_BUCKET = f"LEAST(GREATEST(1.0, rate), tokens + GREATEST(0.0, {_NOW} - refilled) * rate)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    budget     BIGINT NOT NULL CHECK (budget >= 0),
    used       BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= budget),
    rate       DOUBLE PRECISION CHECK (rate IS NULL OR rate > 0),
    tokens     DOUBLE PRECISION,
    refilled   DOUBLE PRECISION,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    created    DOUBLE PRECISION NOT NULL,
    action     TEXT CHECK (action IS NULL OR action IN ('labels', 'block'))
);
CREATE TABLE IF NOT EXISTS monitor_state (
    key_id     BIGINT NOT NULL REFERENCES keys (id),
    monitor    TEXT NOT NULL,
    state      BYTEA NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (key_id, monitor)
);
CREATE TABLE IF NOT EXISTS alarms (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id  BIGINT NOT NULL REFERENCES keys (id),
    monitor TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL,
    at      DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS alarms_by_key ON alarms (key_id, id);
"""
_CHARGE = f"""
UPDATE keys SET used = used + %(rows)s,
                tokens = CASE WHEN rate IS NULL THEN NULL ELSE {_BUCKET} - 1 END,
                refilled = {_NOW}
WHERE token_hash = %(hash)s AND NOT revoked AND used <= budget - %(rows)s
      AND (rate IS NULL OR {_BUCKET} >= 1)
RETURNING id, used, budget, action"""
_REFUSAL = f"SELECT id, used, budget, revoked, action, rate, {_BUCKET} FROM keys WHERE token_hash = %s"
#: a lock id of divqat's own, held while the tables are made (two `keys add` at once)
_SCHEMA_LOCK = 0x64697671


def display_url(url):
    """``url`` without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresKeyStore(KeyStore):
    """The key tables in the PostgreSQL database at ``url``. ``create=True`` makes the tables if
    absent; otherwise a database without them is a FileNotFoundError naming --db. A database
    that cannot be reached is a ValueError naming --db (the URL without its password).
    ``synchronous``: "FULL" or "NORMAL" (see the module docstring). ``pool_size``: most connections."""

    def __init__(self, url, create=False, synchronous="FULL", pool_size=8):
        self.location = display_url(url)
        options = {"autocommit": True,
                   "options": f"-c synchronous_commit={'on' if synchronous == 'FULL' else 'off'}"}
        try:
            with psycopg.connect(url, connect_timeout=10, **options) as conn:
                self._make_schema(conn, create)
        except psycopg.Error as exc:
            raise ValueError(f"--db {self.location}: cannot use the PostgreSQL database ({error_line(exc)})") from None
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=options, open=True,
                                    name="divqat-keys")

    def _make_schema(self, conn, create):
        with conn.transaction():
            exists = conn.execute("SELECT to_regclass('keys') IS NOT NULL").fetchone()[0]
            if not exists and not create:
                raise FileNotFoundError(f"--db {self.location}: no key tables in this database "
                                        "(create them with `divqat keys add`)")
            if create:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA)

    def _execute(self, query, params=()):
        """The rows of one statement, its own transaction."""
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def add(self, name, budget, rate=None):
        check_new_key(name, budget, rate)
        token = new_token()
        rows = self._execute(
            f"INSERT INTO keys (name, token_hash, budget, rate, tokens, refilled, created) "
            f"VALUES (%s, %s, %s, %s, %s, {_NOW}, {_NOW}) ON CONFLICT (name) DO NOTHING RETURNING id",
            (name, hash_token(token), budget, rate, None if rate is None else max(1.0, rate)))
        if not rows:
            raise ValueError(f"NAME: a key named {name!r} already exists in {self.location}")
        return token

    def revoke(self, name):
        if not self._execute("UPDATE keys SET revoked = TRUE WHERE name = %s RETURNING id", (name,)):
            raise ValueError(f"NAME: no key named {name!r} in {self.location}")

    def list(self):
        rows = self._execute("SELECT id, name, used, budget, rate, revoked, action, created FROM keys "
                             "ORDER BY created, name")
        return [{"id": i, "name": n, "used": u, "budget": b, "left": b - u, "rate": r, "revoked": v,
                 "action": a, "created": c} for i, n, u, b, r, v, a, c in rows]

    def usage(self, token):
        rows = self._execute("SELECT id, used, budget, revoked, action FROM keys WHERE token_hash = %s",
                             (hash_token(token),))
        if not rows or rows[0][3]:
            return Charge("unauthorized")
        key_id, used, budget, _, action = rows[0]
        return Charge("ok", used, budget, key_id, action)

    def charge(self, token, rows):
        token_hash = hash_token(token)
        charged = self._execute(_CHARGE, {"rows": rows, "hash": token_hash})
        if charged:
            key_id, used, budget, action = charged[0]
            return Charge("ok", used, budget, key_id, action)
        found = self._execute(_REFUSAL, (token_hash,))
        if not found or found[0][3]:
            return Charge("unauthorized")
        key_id, used, budget, _, action, rate, bucket = found[0]
        if used + rows > budget:
            return Charge("budget", used, budget, key_id, action)
        # the bucket was empty at the UPDATE (it may have refilled since: then a retry is due at once)
        return Charge("rate", used, budget, key_id, action, retry_after=max(0.0, (1.0 - bucket) / rate))

    def monitor_states(self, key_id):
        rows = self._execute("SELECT monitor, state FROM monitor_state WHERE key_id = %s", (key_id,))
        return {monitor: bytes(state) for monitor, state in rows}

    def save_monitor_states(self, key_id, states):
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO monitor_state (key_id, monitor, state, updated_at) VALUES (%s, %s, %s, {_NOW}) "
                "ON CONFLICT (key_id, monitor) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                [(key_id, monitor, bytes(state)) for monitor, state in states.items()])

    def record_alarm(self, key_id, monitor, action, detail):
        self._execute(f"INSERT INTO alarms (key_id, monitor, action, detail, at) VALUES (%s, %s, %s, %s, {_NOW}) "
                      "RETURNING id", (key_id, monitor, action, detail))

    def alarms(self, key_id):
        rows = self._execute("SELECT monitor, action, detail, at FROM alarms WHERE key_id = %s ORDER BY id",
                             (key_id,))
        return [{"monitor": m, "action": a, "detail": d, "at": t} for m, a, d, t in rows]

    def key_action(self, key_id):
        rows = self._execute("SELECT action FROM keys WHERE id = %s", (key_id,))
        return rows[0][0] if rows else None

    def set_key_action(self, key_id, action):
        check_action(action)
        if not self._execute("UPDATE keys SET action = %s WHERE id = %s RETURNING id", (action, key_id)):
            raise ValueError(f"no key with id {key_id} in {self.location}")

    def close(self):
        self._pool.close()
