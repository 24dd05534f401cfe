"""The key stores, SQLite and PostgreSQL, under one contract: tokens stored only as hashes,
budgets checked and counted in one transaction (16 threads and several processes on one key
never push it past its budget, and every row they were granted is in the count), the rate
limit, the CHECK behind the count, per-key monitor state and alarms, and `divqat keys`."""
import multiprocessing
import os
import sqlite3
import stat
import threading

import psycopg
import pytest

from divqat.cli import main
from divqat.serving.key_stores import open_key_store
from divqat.serving.keys import MAX_BUDGET, TOKEN_PREFIX, hash_token


def _charge_until_refused(db, token, rows, granted):
    store = open_key_store(db)
    try:
        while True:
            charge = store.charge(token, rows)
            if charge.status != "ok":
                assert charge.status == "budget"
                return
            granted.append(rows)
    finally:
        store.close()


def _process_worker(db, token, rows, queue):
    granted = []
    _charge_until_refused(db, token, rows, granted)
    queue.put(sum(granted))


def _raw_rows(key_db, query):
    """Rows of ``query`` read past the store, with the database's own client."""
    if key_db.startswith("postgresql://"):
        with psycopg.connect(key_db) as conn:
            return conn.execute(query).fetchall()
    with sqlite3.connect(key_db) as conn:
        return conn.execute(query).fetchall()


def test_only_the_hash_is_stored(store, key_db):
    token = store.add("alice", 10)
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert _raw_rows(key_db, "SELECT name, token_hash FROM keys") == [("alice", hash_token(token))]
    every_value = repr(_raw_rows(key_db, "SELECT * FROM keys"))
    assert token not in every_value and token[len(TOKEN_PREFIX):] not in every_value


def test_sqlite_files_are_private_and_hold_no_token(tmp_path):
    db = tmp_path / "keys.db"
    old = os.umask(0o022)
    try:
        store = open_key_store(db, create=True)
        token = store.add("alice", 10)
        store.charge(token, 1)
    finally:
        os.umask(old)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["keys.db", "keys.db-shm", "keys.db-wal"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o600}
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert token.encode() not in raw and hash_token(token).encode() in raw
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_budget_refuses_whole_batches_and_counts_nothing(store):
    token = store.add("alice", 10)
    first = store.charge(token, 7)
    assert (first.status, first.used, first.left) == ("ok", 7, 3) and first.key_id >= 1
    refused = store.charge(token, 4)
    assert (refused.status, refused.used, refused.left, refused.key_id) == ("budget", 7, 3, first.key_id)
    assert store.charge(token, 3).left == 0
    assert store.charge(token, 1).status == "budget"
    assert store.usage(token).used == 10
    assert store.charge("dqk_not-a-key", 1).status == "unauthorized"
    store.revoke("alice")
    assert store.charge(token, 1).status == "unauthorized" and store.usage(token).status == "unauthorized"
    listed = store.list()[0]
    assert {k: listed[k] for k in ("id", "name", "used", "left", "revoked", "action")} == \
        {"id": first.key_id, "name": "alice", "used": 10, "left": 0, "revoked": True, "action": None}


def test_largest_budget_is_stored_and_counted(store):
    token = store.add("huge", MAX_BUDGET)
    assert store.charge(token, 64).left == MAX_BUDGET - 64
    with pytest.raises(ValueError, match="--budget"):
        store.add("too-huge", MAX_BUDGET + 1)


def test_rate_limit_is_a_token_bucket(store):
    token = store.add("slow", 100, rate=0.5)  # capacity 1 request, one more every 2 s
    assert store.charge(token, 1).status == "ok"
    refused = store.charge(token, 1)
    assert refused.status == "rate" and 1.0 < refused.retry_after <= 2.0
    assert store.usage(token).used == 1  # a refused request is not counted


def test_sixteen_threads_never_pass_the_budget(store, key_db):
    token = store.add("shared", 1000)
    granted = []
    threads = [threading.Thread(target=_charge_until_refused, args=(key_db, token, rows, granted))
               for rows in (3, 7, 11, 13) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = store.usage(token).used
    assert sum(granted) == used <= 1000 and 1000 - used < 3


def test_processes_never_pass_the_budget(store, key_db):
    token = store.add("shared", 600)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(key_db, token, rows, queue)) for rows in (3, 5, 7)]
    for p in procs:
        p.start()
    try:
        totals = [queue.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    used = store.usage(token).used
    assert sum(totals) == used <= 600 and 600 - used < 3


def test_database_refuses_a_count_over_budget(store, key_db):
    store.add("alice", 5)
    if key_db.startswith("postgresql://"):
        with pytest.raises(psycopg.errors.CheckViolation), psycopg.connect(key_db) as conn:
            conn.execute("UPDATE keys SET used = 6")
    else:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            sqlite3.connect(key_db).execute("UPDATE keys SET used = 6")


def test_monitor_state_alarms_and_action(store, key_db):
    alice, bob = store.add("alice", 10), store.add("bob", 10)
    a, b = store.usage(alice).key_id, store.charge(bob, 1).key_id
    assert a != b and store.monitor_states(a) == {} and store.alarms(a) == [] and store.key_action(a) is None
    store.save_monitor_states(a, {"entropy": b"\x00\x01", "coverage": b""})
    store.save_monitor_states(a, {"entropy": b"\xff" * 1000})  # upsert: one replaced, the other kept
    store.save_monitor_states(b, {"entropy": b"bob"})
    assert store.monitor_states(a) == {"entropy": b"\xff" * 1000, "coverage": b""}
    assert store.monitor_states(b) == {"entropy": b"bob"}
    store.record_alarm(a, "entropy", "labels", "low entropy: 0.1 < 0.5")
    store.record_alarm(a, "coverage", "block", "grid coverage 0.9")
    alarms = store.alarms(a)
    assert [(x["monitor"], x["action"], x["detail"]) for x in alarms] == [
        ("entropy", "labels", "low entropy: 0.1 < 0.5"), ("coverage", "block", "grid coverage 0.9")]
    assert alarms[0]["at"] <= alarms[1]["at"] and abs(alarms[0]["at"] - store.list()[0]["created"]) < 60
    assert store.alarms(b) == []
    store.set_key_action(a, "labels")
    store.set_key_action(a, "block")
    assert store.key_action(a) == "block" and store.key_action(b) is None
    assert store.charge(alice, 1).action == "block" and store.usage(alice).action == "block"
    with pytest.raises(ValueError, match="action must be one of labels, block"):
        store.set_key_action(a, "deny")
    store.set_key_action(a, None)
    assert store.key_action(a) is None
    reopened = open_key_store(key_db)  # every write was committed
    try:
        assert reopened.monitor_states(a) == {"entropy": b"\xff" * 1000, "coverage": b""}
        assert len(reopened.alarms(a)) == 2
    finally:
        reopened.close()


def _last_line(capsys):
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_cli_add_list_revoke(key_db, capsys):
    assert main(["keys", "add", "alice", "--db", key_db, "--budget", "50", "--rate", "2"]) == 0
    token = _last_line(capsys)
    assert token.startswith(TOKEN_PREFIX) and " " not in token
    store = open_key_store(key_db)
    try:
        assert store.usage(token).left == 50
    finally:
        store.close()
    assert main(["keys", "list", "--db", key_db]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["alice", "0", "50", "50", "2", "active"]
    store = open_key_store(key_db)
    try:
        store.set_key_action(store.usage(token).key_id, "labels")  # as a monitor's alarm would
    finally:
        store.close()
    assert main(["keys", "list", "--db", key_db]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "answers:labels"
    assert main(["keys", "revoke", "alice", "--db", key_db]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--db", key_db]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[1].split() == ["alice", "0", "50", "50", "2", "revoked"] and token not in listing


@pytest.mark.parametrize("argv, match", [
    (["add", "bad name", "--budget", "5"], "NAME"),
    (["add", "alice", "--budget", "-1"], "--budget"),
    (["add", "alice", "--budget", str(2**63)], "--budget must be in [0, 9223372036854775807]"),
    (["add", "alice", "--budget", "5", "--rate", "0"], "--rate must be > 0"),
    (["revoke", "nobody"], "no key named"),
])
def test_cli_errors_one_line_exit_2(argv, match, tmp_path, capsys):
    db = tmp_path / "keys.db"
    if argv[0] == "revoke":
        open_key_store(db, create=True).close()
    assert main(["keys", *argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    if argv[0] == "add":
        assert not db.exists()  # validated before the database is created


@pytest.mark.parametrize("kind, match", [
    ("directory", "is a directory, not a key database"),
    ("text file", "not a usable key database (file is not a database)"),
    ("other sqlite", "without divqat's keys table"),
    ("missing directory", "cannot create the key database (No such file or directory)"),
    ("unwritable", "cannot create the key database"),
])
def test_cli_db_that_is_not_a_key_database(kind, match, tmp_path, capsys):
    db = {"directory": tmp_path, "text file": tmp_path / "notes.txt", "other sqlite": tmp_path / "other.db",
          "missing directory": tmp_path / "nowhere" / "keys.db", "unwritable": "/proc/keys.db"}[kind]
    if kind == "text file":
        db.write_text("not a database, but a note long enough to be read " * 100)
    elif kind == "other sqlite":
        sqlite3.connect(db).execute("CREATE TABLE notes (body TEXT)")
    before = db.read_bytes() if kind in ("text file", "other sqlite") else None
    for action in (["add", "alice", "--budget", "5"], ["list"], ["revoke", "alice"]):
        assert main(["keys", *action, "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--db {db}: " in err and "Traceback" not in err
        assert match in err or (action[0] != "add" and "no key database there" in err)
    if before is not None:
        assert db.read_bytes() == before  # nothing written into someone else's file


def test_cli_key_database_of_an_older_divqat_is_refused_as_it_is(tmp_path, capsys):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the schema before key ids and actions
        conn.execute("CREATE TABLE keys (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, "
                     "budget INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0, rate REAL, tokens REAL, "
                     "refilled REAL, revoked INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)")
    before = db.read_bytes()
    assert main(["keys", "list", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a key database of an older divqat" in err and db.read_bytes() == before


@pytest.mark.parametrize("synchronous, expected", [("FULL", "on"), ("NORMAL", "off")])
def test_postgres_durability_is_the_sessions_synchronous_commit(postgres, synchronous, expected):
    store = open_key_store(postgres.create_database(f"sync_{synchronous.lower()}"), create=True,
                           synchronous=synchronous)
    try:
        assert store._execute("SHOW synchronous_commit") == [(expected,)]
    finally:
        store.close()


def test_cli_unreachable_postgres_is_one_line_without_password(capsys):
    from divqat.serving.process import free_port

    url = f"postgresql://divqat:s3cret@127.0.0.1:{free_port()}/keys"
    assert main(["keys", "list", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot use the PostgreSQL database" in err and "s3cret" not in err
    assert f"postgresql://divqat@127.0.0.1:{url.split(':')[3].split('/')[0]}/keys" in err


def test_cli_missing_store_and_duplicate_name(key_db, capsys):
    assert main(["keys", "list", "--db", key_db]) == 2
    assert "no key" in capsys.readouterr().err
    assert main(["keys", "add", "alice", "--db", key_db, "--budget", "1"]) == 0
    assert main(["keys", "add", "alice", "--db", key_db, "--budget", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
