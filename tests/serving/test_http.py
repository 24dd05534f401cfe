"""`divqat serve` as a real uvicorn process on a loopback port, with real SQLite keys: its answers
are ONNX Runtime's, every error status is JSON, many threads and two server processes on one
key never get a row answered beyond its budget or uncounted, the counts survive a kill -9 under
load, and a KnockoffNets attack by URL spends exactly what the server counted."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from serving_helpers import BETA, MAX_BATCH, assert_error, post, rows, serve

from divqat.blackbox import QueryBudgetExceeded
from divqat.cli import main
from divqat.serving.http_blackbox import HttpBlackBox


@pytest.fixture(scope="module")
def store(sqlite_store):
    return sqlite_store


@pytest.fixture(scope="module")
def server(model_file, store):
    s = serve(model_file, store.location)
    yield s
    s.stop()


def test_health_and_meta_without_defense_parameters(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    response = httpx.get(server.url + "/v1/meta")
    meta = response.json()
    assert meta["input_shape"] == [1, 8, 8] and meta["num_classes"] == 10 and meta["max_batch"] == MAX_BATCH
    assert meta["input_formats"] == ["application/json", "application/octet-stream"]
    assert meta["defense"] == "dcp" and meta["answers"] == "probabilities" and meta["arch"] == "smallcnn"
    assert set(meta["meta"]) >= {"mean", "std", "num_classes", "in_channels", "image_size"}
    assert BETA not in response.text


def test_answers_are_onnx_runtime_answers(server, store, model_file, images):
    token = store.add("exact", 100)
    response = post(server.url, token, rows(images, 20))
    assert response.status_code == 200
    answer = response.json()
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": images[:20].numpy()})[0]
    np.testing.assert_array_equal(np.array(answer["outputs"], np.float32), expected)
    assert (answer["queries_used"], answer["budget_left"]) == (20, 80) == (store.usage(token).used, 80)


def test_binary_bodies_answer_as_json_bodies(server, store, images):
    token = store.add("binary", 100)
    binary = httpx.post(server.url + "/v1/predict", content=images[:20].numpy().astype("<f4").tobytes(),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    assert binary.status_code == 200
    assert binary.json()["outputs"] == post(server.url, token, rows(images, 20)).json()["outputs"]
    assert store.usage(token).used == 40
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    raw = images[:2].numpy().astype("<f4")
    for body, status, match in [
        (raw.tobytes()[:-4], 422, "256 bytes per image"),
        (b"", 422, "N >= 1"),
        (np.where(raw == 0, np.nan, raw).astype("<f4").tobytes(), 422, "finite"),
        (np.full((MAX_BATCH + 1, 1, 8, 8), 0.5, "<f4").tobytes(), 413, "max_batch"),
    ]:
        assert_error(httpx.post(server.url + "/v1/predict", content=body, headers=headers), status, match)
    assert store.usage(token).used == 40


def _bad_bodies(images):
    good = images[:2].tolist()
    return [
        (b'{"inputs": [', "not valid JSON"),
        (b'{"inputs": ' + b"[" * 50000 + b"]" * 50000 + b"}", "not valid JSON (depth limit exceeded"),
        (b"\xff\xfe", "not valid JSON"),
        (json.dumps({"inputs": [[[[0.5] * 8] * 8]] * 2 + [[[[[0.5]] * 8] * 8]]}), "ragged lists"),
        (json.dumps({"inputs": good, "extra": 1}), "nothing else"),
        (json.dumps({"inputs": []}), "nonempty"),
        (json.dumps({"inputs": [[[0.5] * 8] * 8]}), "shape"),
        (json.dumps({"inputs": [good[0], good[1][0]]}), "shape"),
        (json.dumps({"inputs": good}).replace("0.0", "NaN", 1), "not valid JSON"),
        (json.dumps({"inputs": good}).replace("0.0", "1e999", 1), "not valid JSON (number is infinity"),
        (json.dumps({"inputs": good}).replace("0.0", "1.5", 1), "[0, 1]"),
        (json.dumps({"inputs": good}).replace("0.0", '"0.0"', 1), "only numbers"),
        (json.dumps({"inputs": good}).replace("0.0", "true", 1), "only numbers"),
        (json.dumps({"inputs": good}).replace("0.0", "false", 1), "only numbers"),
    ]


def test_every_error_status_is_json(server, store, images):
    token = store.add("errors", 10)
    for body, match in _bad_bodies(images):
        assert_error(post(server.url, token, body), 422, match)
    assert_error(post(server.url, token, rows(images, MAX_BATCH + 1)), 413, "max_batch")
    assert_error(post(server.url, token, b" " * (MAX_BATCH * 64 * 32 + 5000)), 413, "limit")
    good = json.dumps(rows(images, 1))
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Authorization": f"Bearer {token}", **({"Content-Type": content_type} if content_type else {})}
        response = httpx.post(server.url + "/v1/predict", content=good, headers=headers)
        assert_error(response, 415, f"got {'Content-Type ' + content_type if content_type else 'no Content-Type'}")
    with_charset = post(server.url, token, good, headers={"Content-Type": "application/json; charset=utf-8"})
    assert with_charset.status_code == 200 and with_charset.json()["queries_used"] == 1
    store.revoke("errors")
    token = store.add("errors2", 10)
    assert_error(post(server.url, None, rows(images, 1)), 401, "missing API key")
    assert_error(post(server.url, "dqk_unknown", rows(images, 1)), 401, "unknown or revoked")
    response = httpx.post(server.url + "/v1/predict", json=rows(images, 1), headers={"Authorization": "Basic x"})
    assert_error(response, 401, "missing API key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert store.usage(token).used == 0  # nothing refused was counted
    refused = post(server.url, token, rows(images, 11))
    assert_error(refused, 429, "refused")
    assert refused.json()["reason"] == "budget" and store.usage(token).used == 0
    assert post(server.url, token, rows(images, 10)).json()["budget_left"] == 0
    assert_error(post(server.url, token, rows(images, 1)), 429, "0 of its budget of 10 left")
    store.revoke("errors2")
    assert_error(post(server.url, token, rows(images, 1)), 401, "unknown or revoked")
    assert_error(httpx.get(server.url + "/v1/nothing"), 404, "Not Found")
    assert_error(httpx.get(server.url + "/v1/predict"), 405, "Method Not Allowed")


def test_a_server_error_is_json_without_traceback(model_file, store, tmp_path):
    """A file whose metadata promises 9x9 images to an 8x8 graph: ONNX Runtime fails inside the
    request. The client gets a fixed 500 message; the traceback goes to the server's log."""
    import onnx

    model = onnx.load(str(model_file))
    entry = next(p for p in model.metadata_props if p.key == "divqat")
    entry.value = entry.value.replace('"image_size": 8', '"image_size": 9')
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    token = store.add("broken", 10)
    server = serve(broken, store.location)
    try:
        response = post(server.url, token, {"inputs": [[[[0.5] * 9] * 9]]})
        assert_error(response, 500, "internal server error")
        assert response.json() == {"error": "internal server error"}
        assert httpx.get(server.url + "/healthz").status_code == 200  # still serving
        assert "Traceback" in server.output()
    finally:
        server.stop()
    assert store.usage(token).used == 1  # counted before answering: a failed answer stays counted


def test_rate_limit_answers_429_with_retry_after(server, store, images):
    token = store.add("slow", 100, rate=0.2)
    assert post(server.url, token, rows(images, 1)).status_code == 200
    response = post(server.url, token, rows(images, 1))
    assert_error(response, 429, "rate limit")
    assert response.json()["reason"] == "rate" and 1 <= int(response.headers["retry-after"]) <= 5
    assert store.usage(token).used == 1


def test_serving_a_run_directory_serves_the_exported_file(model_file, victim_dir):
    """`divqat serve --victim DIR --defense ...` builds in memory the very file `divqat export` writes."""
    from divqat.serving.serve_command import served_model

    config = {"victim": str(victim_dir), "defense": "dcp", "defense_arg": [f"beta={BETA}"]}
    assert served_model(config).SerializeToString() == model_file.read_bytes()


def test_http_blackbox_batches_waits_out_the_rate_and_stops_at_the_budget(server, store, images, model_file):
    token = store.add("blackbox", 150, rate=1.0)  # one request now, then one a second: 5 requests wait
    blackbox = HttpBlackBox(server.url, token)
    assert (blackbox.max_batch, blackbox.num_classes, blackbox.input_shape) == (MAX_BATCH, 10, (1, 8, 8))
    answers = blackbox.query(images[:140])  # 3 requests (64 + 64 + 12)
    answers = torch.cat([answers, blackbox.query(images[140:145]), blackbox.query(images[145:148])])
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(answers.numpy(), session.run(None, {"input": images[:148].numpy()})[0])
    assert blackbox.queries_used == blackbox.server_queries_used == store.usage(token).used == 148
    assert blackbox.rate_waits >= 1
    with pytest.raises(QueryBudgetExceeded, match="2 queries left"):
        blackbox.query(images[:3])
    assert store.usage(token).used == 148 and blackbox.budget_left == 2
    blackbox.close()


def test_knockoff_by_url_spends_what_the_server_counts(server, store, tmp_path, monkeypatch, capsys,
                                                      victim_dir):
    attacker, evaluator = store.add("attacker", 300), store.add("evaluator", 400)
    common = ["attack", "--victim", server.url, "--attack", "knockoff", "--queryset", "digits", "--budget", "300",
              "--epochs", "4", "--lr", "0.05", "--momentum", "0.9", "--no-progress", "--device", "cpu"]
    monkeypatch.setenv("DIVQAT_API_KEY", attacker)
    assert main([*common, "--eval-victim", str(victim_dir), "--defense", "dcp", "--defense-arg", f"beta={BETA}",
                 "--out", str(tmp_path / "local")]) == 0
    metrics = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert metrics["queries_used"] == metrics["server_queries_used"] == store.usage(attacker).used == 300
    assert metrics["evaluation"].startswith("local copy") and metrics["defense"] == "dcp"
    assert metrics["agreement"] > 0.3  # well above the 10% of chance after 300 queries
    # the budget is spent: a second run is refused before training, and nothing more is counted
    assert main([*common, "--eval-victim", str(victim_dir), "--out", str(tmp_path / "again")]) == 2
    assert "exceeds the 0 queries" in capsys.readouterr().err and store.usage(attacker).used == 300
    # scored through the server with a second key: the attacker's key is not touched
    attacker2 = store.add("attacker2", 300)
    assert main([*common, "--api-key", attacker2, "--eval-api-key", evaluator, "--eval-dataset", "digits",
                 "--out", str(tmp_path / "remote")]) == 0
    remote = json.loads((tmp_path / "remote" / "metrics.json").read_text())
    assert remote["server_queries_used"] == store.usage(attacker2).used == 300
    assert store.usage(evaluator).used == 360 and remote["evaluation"] == "server, second key"
    assert remote["victim_accuracy"] == metrics["victim_accuracy"]  # the same answers, served or local


@pytest.mark.parametrize("argv, match", [
    ([], "exactly one of --eval-victim"),
    (["--eval-api-key", "x"], "--eval-dataset"),
    (["--eval-victim", "DIR", "--output", "label"], "--output does not apply"),
])
def test_attack_by_url_option_errors(server, argv, match, capsys, victim_dir):
    argv = [str(victim_dir) if a == "DIR" else a for a in argv]
    assert main(["attack", "--victim", server.url, "--api-key", "k", "--attack", "knockoff", "--queryset", "digits",
                 "--budget", "10", *argv, "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err


@pytest.mark.parametrize("argv, match", [
    (["--defense", "dcp"], "already holds its defense"),
    (["--max-batch", "0"], "--max-batch must be in [1, 4096]"),
    (["--max-batch", "1000000000"], "--max-batch must be in [1, 4096], got 1000000000"),
    (["--model-name", "a/b"], "--model-name must be"),
    (["--sync", "always"], "--sync must be one of full, normal"),
    (["--db", "missing.db"], "no key database"),
])
def test_serve_argument_errors_before_listening(model_file, store, argv, match, capsys, tmp_path):
    db = ["--db", str(tmp_path / "missing.db")] if "--db" in argv else ["--db", store.location]
    argv = [a for a in argv if a not in ("--db", "missing.db")]
    assert main(["serve", "--victim", str(model_file), *db, *argv, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err


def test_serve_refuses_an_onnx_file_not_written_by_export(store, capsys, victim_dir):
    assert main(["serve", "--victim", str(victim_dir / "model_int8.onnx"), "--db", store.location]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not written by `divqat export`" in err


def _serve_command(model_file, store, *argv):
    return [sys.executable, "-m", "divqat.cli", "serve", "--victim", str(model_file), "--db", store.location, *argv]


def test_port_in_use_is_one_line_without_a_banner(model_file, store, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--victim", str(model_file), "--db", store.location, "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"--port {port}: address 127.0.0.1:{port} is already in use" in captured.err
    assert "divqat serve:" not in captured.out


def _wait_for_banner(process):
    line = process.stdout.readline()
    assert line.startswith("divqat serve:"), line + process.stdout.read()
    return int(line.split("http://127.0.0.1:")[1].split(" ")[0])


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def test_port_0_prints_the_bound_port_and_workers_die_with_their_parent(model_file, store):
    """--workers 2 --port 0: the banner names the bound port, after the bind; kill -9 of the main
    process leaves no worker answering, and the port is free again at once."""
    process = subprocess.Popen(_serve_command(model_file, store, "--port", "0", "--workers", "2"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        port = _wait_for_banner(process)
        assert port != 0
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200 and len(_children(process.pid)) >= 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the workers did not answer"
            time.sleep(0.2)
        workers = [pid for pid in _children(process.pid) if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
        assert len(workers) >= 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                  for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", timeout=2)
        with socket.socket() as again:  # a restart on the same port would bind
            again.bind(("127.0.0.1", port))
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(30)
