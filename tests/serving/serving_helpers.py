"""Helpers of the HTTP serving tests: a real `divqat serve` process, requests, error checks and
the many-clients hammer that the budget tests share."""
import itertools
import json
import re
import threading

import httpx

from divqat.serving.key_stores import open_key_store
from divqat.serving.process import ServerProcess

MAX_BATCH = 64
BETA = "0.625"
JSON_TYPE = {"Content-Type": "application/json"}
_DATABASES = itertools.count()


def serve(model_file, db, *argv):
    """A real `divqat serve` of ``model_file`` with the key store ``db``, one OpenMP thread."""
    return ServerProcess("--victim", model_file, "--db", db, "--max-batch", MAX_BATCH, *argv,
                         env={"OMP_NUM_THREADS": "1"})


def rows(images, n):
    return {"inputs": images[:n].tolist()}


def post(url, token, body, client=httpx, headers=None):
    """POST /v1/predict: a dict as JSON, bytes or str as they are with a JSON Content-Type."""
    headers = {**({} if token is None else {"Authorization": f"Bearer {token}"}), **(headers or {})}
    if isinstance(body, (bytes, str)):
        return client.post(url + "/v1/predict", content=body, headers={**JSON_TYPE, **headers}, timeout=60)
    return client.post(url + "/v1/predict", json=body, headers=headers, timeout=60)


def assert_error(response, status, match):
    """A JSON error of ``status`` whose message holds ``match`` and no Python internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert match in message and "Traceback" not in response.text
    assert not re.search(r"[A-Z][A-Za-z]*(Error|Exception)\b", message), message  # no exception class names


def hammer(urls, token, images, sizes, route="/v1/predict"):
    """One thread per (url, size): post batches of ``size`` rows until refused; the rows answered
    and the refusals (status, reason)."""
    answered, statuses = [], []

    def client(url, size):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            while True:
                response = c.post(route, json=rows(images, size))
                if response.status_code != 200:
                    statuses.append((response.status_code, response.json().get("reason")))
                    return
                answered.append(len(response.json()["outputs"]))

    threads = [threading.Thread(target=client, args=(url, size)) for url in urls for size in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(answered), statuses


def usage(url, token):
    return json.loads(httpx.get(url + "/v1/usage", headers={"Authorization": f"Bearer {token}"}).text)


def new_key_db(kind, tmp_path_factory, request):
    """Where a new, empty key store goes: a SQLite path or the URL of a new PostgreSQL database."""
    if kind == "sqlite":
        return str(tmp_path_factory.mktemp("db") / "keys.db")
    return request.getfixturevalue("postgres").create_database(f"keys_{next(_DATABASES)}")


def module_store(kind, tmp_path_factory, request):
    """A new key store of ``kind`` with its tables, closed when ``request``'s scope ends."""
    store = open_key_store(new_key_db(kind, tmp_path_factory, request), create=True)
    request.addfinalizer(store.close)
    return store
