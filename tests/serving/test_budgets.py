"""Budgets held by real `divqat serve` processes on each key store, SQLite and PostgreSQL: 16
clients racing one key, two servers (one of them with two workers) sharing one store, and kill
-9 of a server under load then a restart; for every key, answered <= counted <= budget."""
import threading
import time

import httpx
import pytest
from serving_helpers import assert_error, hammer, module_store, post, rows, serve, usage


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):
    return module_store(request.param, tmp_path_factory, request)


@pytest.fixture(scope="module")
def server(model_file, store):
    s = serve(model_file, store.location)
    yield s
    s.stop()


def test_sixteen_clients_one_key_never_past_its_budget(server, store, images):
    token = store.add("hammered", 500)
    answered, statuses = hammer([server.url], token, images, sizes=(1, 2, 3, 5, 7, 8, 13, 16) * 2)
    assert answered == store.usage(token).used == 500  # the size-1 clients spend the last rows
    assert set(statuses) == {(429, "budget")}


def test_two_servers_share_one_store(server, store, model_file, images):
    """The module's server and a `--workers 2` server (three processes) on one key."""
    second = serve(model_file, store.location, "--workers", "2")
    try:
        token = store.add("two-servers", 400)
        answered, statuses = hammer([server.url, second.url], token, images, sizes=(1, 4, 9, 16))
    finally:
        second.stop()
    assert answered == store.usage(token).used == 400 and set(statuses) == {(429, "budget")}


def test_kill_9_under_load_keeps_every_count(model_file, store, images):
    spent, busy = store.add("spent", 120), store.add("busy", 10**9)
    first = serve(model_file, store.location)
    answered, stop, threads = [], threading.Event(), []
    try:
        assert hammer([first.url], spent, images, sizes=(1, 8))[0] == 120

        def load():
            with httpx.Client(base_url=first.url, headers={"Authorization": f"Bearer {busy}"}, timeout=60) as c:
                while not stop.is_set():
                    try:
                        answered.append(len(c.post("/v1/predict", json=rows(images, 16)).json()["outputs"]))
                    except httpx.HTTPError:  # the server died under this request: not answered
                        return

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(answered) < 320 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.kill()
    finally:
        stop.set()
        first.stop()  # also the teardown when a line above failed
        for t in threads:
            t.join()
    restarted = serve(model_file, store.location)
    try:
        assert usage(restarted.url, spent) == {"queries_used": 120, "budget_left": 0}
        counted = usage(restarted.url, busy)["queries_used"]
        assert 320 <= sum(answered) <= counted <= sum(answered) + 6 * 16  # at most the in-flight requests
        assert_error(post(restarted.url, spent, rows(images, 1)), 429, "budget")
    finally:
        restarted.stop()
