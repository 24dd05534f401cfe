"""The SQLite key store: tokens stored only as hashes, budgets checked and counted in one
transaction (many threads and several processes on one file never push a key past its budget,
and every row they were granted is in the count), the rate limit, and `divqat keys`."""
import multiprocessing
import sqlite3
import threading

import pytest

from divqat.cli import main
from divqat.serving.keys import TOKEN_PREFIX, KeyStore, hash_token


def _charge_until_refused(db, token, rows, granted):
    store = KeyStore(db)
    while True:
        charge = store.charge(token, rows)
        if charge.status != "ok":
            assert charge.status == "budget"
            return
        granted.append(rows)


def _process_worker(db, token, rows, queue):
    granted = []
    _charge_until_refused(db, token, rows, granted)
    queue.put(sum(granted))


def test_only_the_hash_is_stored(tmp_path):
    db = tmp_path / "keys.db"
    token = KeyStore(db, create=True).add("alice", 10)
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    rows = sqlite3.connect(db).execute("SELECT name, token_hash FROM keys").fetchall()
    assert rows == [("alice", hash_token(token))]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert token.encode() not in raw and hash_token(token).encode() in raw
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_budget_refuses_whole_batches_and_counts_nothing(tmp_path):
    store = KeyStore(tmp_path / "keys.db", create=True)
    token = store.add("alice", 10)
    assert store.charge(token, 7).used == 7
    refused = store.charge(token, 4)
    assert (refused.status, refused.used, refused.left) == ("budget", 7, 3)
    assert store.charge(token, 3).left == 0
    assert store.charge(token, 1).status == "budget"
    assert store.usage(token).used == 10
    assert store.charge("dqk_not-a-key", 1).status == "unauthorized"
    store.revoke("alice")
    assert store.charge(token, 0).status == "unauthorized" and store.usage(token).status == "unauthorized"
    assert store.list()[0] == {**store.list()[0], "name": "alice", "used": 10, "left": 0, "revoked": True}


def test_rate_limit_is_a_token_bucket(tmp_path):
    store = KeyStore(tmp_path / "keys.db", create=True)
    token = store.add("slow", 100, rate=0.5)  # capacity 1 request, one more every 2 s
    assert store.charge(token, 1).status == "ok"
    refused = store.charge(token, 1)
    assert refused.status == "rate" and 1.0 < refused.retry_after <= 2.0
    assert store.usage(token).used == 1  # a refused request is not counted


def test_threads_never_pass_the_budget(tmp_path):
    db = tmp_path / "keys.db"
    token = KeyStore(db, create=True).add("shared", 1000)
    granted = []
    threads = [threading.Thread(target=_charge_until_refused, args=(db, token, rows, granted))
               for rows in (3, 7, 11, 13) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = KeyStore(db).usage(token).used
    assert sum(granted) == used <= 1000 and 1000 - used < 3


def test_processes_never_pass_the_budget(tmp_path):
    db = tmp_path / "keys.db"
    token = KeyStore(db, create=True).add("shared", 600)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(str(db), token, rows, queue)) for rows in (3, 5, 7)]
    for p in procs:
        p.start()
    totals = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    used = KeyStore(db).usage(token).used
    assert sum(totals) == used <= 600 and 600 - used < 3


def test_database_refuses_a_count_over_budget(tmp_path):
    db = tmp_path / "keys.db"
    KeyStore(db, create=True).add("alice", 5)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        sqlite3.connect(db).execute("UPDATE keys SET used = 6")


def test_cli_add_list_revoke(tmp_path, capsys):
    db = str(tmp_path / "keys.db")
    assert main(["keys", "add", "alice", "--db", db, "--budget", "50", "--rate", "2"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX) and " " not in token
    assert KeyStore(db).usage(token).left == 50
    assert main(["keys", "list", "--db", db]) == 0
    assert "alice" in capsys.readouterr().out and token not in capsys.readouterr().out
    assert main(["keys", "revoke", "alice", "--db", db]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["alice", "0", "50", "50", "2", "revoked"]


@pytest.mark.parametrize("argv, match", [
    (["add", "bad name", "--budget", "5"], "NAME"),
    (["add", "alice", "--budget", "-1"], "--budget"),
    (["add", "alice", "--budget", "5", "--rate", "0"], "--rate must be > 0"),
    (["revoke", "nobody"], "no key named"),
])
def test_cli_errors_one_line_exit_2(argv, match, tmp_path, capsys):
    db = tmp_path / "keys.db"
    if argv[0] == "revoke":
        KeyStore(db, create=True)
    assert main(["keys", *argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    if argv[0] == "add":
        assert not db.exists()  # validated before the database is created


def test_cli_missing_database_and_duplicate_name(tmp_path, capsys):
    db = str(tmp_path / "keys.db")
    assert main(["keys", "list", "--db", db]) == 2 and "no key database" in capsys.readouterr().err
    assert main(["keys", "add", "alice", "--db", db, "--budget", "1"]) == 0
    assert main(["keys", "add", "alice", "--db", db, "--budget", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
