"""Per-key extraction monitors inside a real `divqat serve` (uvicorn on a loopback port, real
SQLite): each monitor flags a synthetic attack stream and not honest in-distribution traffic,
the actions (log, labels, block) reach the client and nothing else does, `keys list` shows the
monitors and alarms, the state and the action survive a restart, and bad options are one-line
errors. The victim is the session's tiny digits model (tests/serving/conftest.py)."""
import json
import re

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from divqat.cli import main
from divqat.data import load_tensors
from divqat.detection.calibration import calibrate, load_calibration
from divqat.detection.confidence import ConfidenceCusum
from divqat.serving.export import export_defended
from divqat.serving.key_stores import open_key_store
from divqat.serving.process import ServerProcess
from divqat.utils import atomic_write_bytes

BATCH = 30


def _key_id(store, name):
    """The store's id of the key called ``name`` (what the monitors' state is filed under)."""
    return next(key["id"] for key in store.list() if key["name"] == name)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, victim_dir):
    """The undefended export and its calibration (first 180 test images) beside it."""
    path = tmp_path_factory.mktemp("detect") / "victim.onnx"
    atomic_write_bytes(export_defended(victim_dir).SerializeToString(), path)
    assert main(["detect", "calibrate", "--model", str(path), "--dataset", "digits", "--split", "test",
                 "--images", "180"]) == 0
    return path


def _probs(model_file, x):
    """The victim's float64 probabilities, by ONNX Runtime on the exported file (no defense: its answers)."""
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": np.ascontiguousarray(x, np.float32)})[0].astype(np.float64)


@pytest.fixture(scope="module")
def streams():
    test_x, _ = load_tensors("digits", "test")
    train_x, train_y = load_tensors("digits", "train")
    rng = np.random.default_rng(0)
    honest = test_x[180:].numpy()[rng.permutation(len(test_x) - 180)]
    seeds = test_x[:10].numpy()
    steps = 0.1 * np.sign(rng.normal(size=(400, 1, 8, 8)))
    jbda = np.clip(seeds[rng.integers(0, 10, 400)] + steps * rng.integers(0, 2, (400, 1, 1, 1)), 0, 1)
    noise = rng.uniform(0, 1, (300, 1, 8, 8))
    one_class = train_x[train_y == 3].numpy()
    return {name: np.asarray(x, np.float32) for name, x in
            {"honest": honest, "jbda": jbda, "noise": noise, "one_class": one_class}.items()}


def _serve(model_file, store, *argv):
    return ServerProcess("--victim", model_file, "--db", store.path, *argv, env={"OMP_NUM_THREADS": "1"})


def _post(server, token, x):
    return httpx.post(server.url + "/v1/predict", content=np.ascontiguousarray(x, "<f4").tobytes(), timeout=60,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})


def _send(server, token, x, batch=BATCH):
    return [_post(server, token, x[i:i + batch]) for i in range(0, len(x), batch)]


def _alarm_query(alarm):
    return int(re.match(r"query (\d+):", alarm["detail"]).group(1))


def test_calibrate_writes_the_victims_statistics_beside_the_model(model_file):
    cal = load_calibration(model_file.with_name("victim.calibration.json"), 10)
    expected = calibrate(_probs(model_file, load_tensors("digits", "test")[0][:180].numpy()), 0.05)
    assert cal["tau"] == pytest.approx(expected["tau"], abs=1e-6)  # float32 answers vs float64 softmax
    assert cal["unsure_rate"] == expected["unsure_rate"] and cal["prior"] == pytest.approx(expected["prior"])
    assert cal["images"] == 180 and cal["source"] == "digits test[0:180]"


def test_each_monitor_flags_its_attack_stream_and_not_honest_traffic(model_file, streams, tmp_path, capsys):
    store = open_key_store(tmp_path / "keys.db", create=True)
    tokens = {name: store.add(name, 10_000) for name in streams}
    with _serve(model_file, store, "--monitors", "prada,ood,classes", "--classes-min-count", "100") as server:
        for name, x in streams.items():
            responses = _send(server, tokens[name], x)
            assert all(r.status_code == 200 for r in responses)  # log: every key is answered
            assert set(responses[-1].json()) == {"outputs", "queries_used", "budget_left"}
    fired = {name: {a["monitor"] for a in store.alarms(_key_id(store, name))} for name in streams}
    assert fired["honest"] == set()
    assert "prada" in fired["jbda"] and "ood" in fired["noise"] and "classes" in fired["one_class"]
    assert all(a["action"] == "log" for name in streams for a in store.alarms(_key_id(store, name)))
    assert all(store.key_action(_key_id(store, name)) is None for name in streams)
    # the CUSUM's alarm is where a CUSUM over the same answers, computed here, crosses its threshold
    cal = load_calibration(model_file.with_name("victim.calibration.json"), 10)
    monitor = ConfidenceCusum(cal["tau"], cal["unsure_rate"])
    expected = monitor.update(monitor.new_state(), streams["noise"], _probs(model_file, streams["noise"]))
    ood = next(a for a in store.alarms(_key_id(store, "noise")) if a["monitor"] == "ood")
    assert _alarm_query(ood) == expected.query
    assert main(["keys", "list", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    n = len(streams["honest"])
    assert f"    monitors: classes {n} queries, ood {n} queries, prada {n} queries; action in force: none" in out
    assert re.search(rf"    alarm \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC ood \(log\): query {expected.query}: statistic ",
                     out)


def test_labels_action_answers_labels_from_the_alarm_on(model_file, streams, tmp_path):
    store = open_key_store(tmp_path / "keys.db", create=True)
    thief, honest = store.add("thief", 10_000), store.add("honest", 10_000)
    x = streams["noise"]
    with _serve(model_file, store, "--monitors", "ood", "--on-alarm", "labels") as server:
        answers = [np.array(r.json()["outputs"]) for r in _send(server, thief, x, batch=10)]
        honest_answers = np.array(_post(server, honest, streams["honest"][:30]).json()["outputs"])
    alarm = _alarm_query(store.alarms(_key_id(store, "thief"))[0])
    first_labelled = (alarm - 1) // 10  # the request that raised the alarm is answered with labels
    probs = _probs(model_file, x)
    for i, answer in enumerate(answers):
        expected = probs[10 * i:10 * i + 10]
        if i < first_labelled:
            np.testing.assert_allclose(answer, expected, atol=1e-6)
        else:
            np.testing.assert_array_equal(answer, np.eye(10)[expected.argmax(axis=1)])
    assert 0 < first_labelled < len(answers) and store.key_action(_key_id(store, "thief")) == "labels"
    assert store.key_action(_key_id(store, "honest")) is None and not ((honest_answers == 0) | (honest_answers == 1)).all()


def test_block_action_state_and_alarm_survive_a_restart(model_file, streams, tmp_path, capsys):
    """The key's CUSUM is carried across a restart: the alarm comes at the query a CUSUM over the
    whole stream, computed here, crosses its threshold; the block holds on the new server."""
    store = open_key_store(tmp_path / "keys.db", create=True)
    thief, honest = store.add("thief", 10_000), store.add("honest", 10_000)
    x = streams["noise"]
    cal = load_calibration(model_file.with_name("victim.calibration.json"), 10)
    monitor = ConfidenceCusum(cal["tau"], cal["unsure_rate"])
    expected = monitor.update(monitor.new_state(), x, _probs(model_file, x)).query
    assert expected > 2
    argv = ("--monitors", "ood", "--on-alarm", "block")
    with _serve(model_file, store, *argv) as server:
        assert all(r.status_code == 200 for r in _send(server, thief, x[:expected - 2], batch=1))
        assert all(r.status_code == 200 for r in _send(server, honest, streams["honest"][:60]))
    assert store.alarms(_key_id(store, "thief")) == [] and store.usage(thief).used == expected - 2
    with _serve(model_file, store, *argv) as server:
        assert _post(server, thief, x[expected - 2:expected - 1]).status_code == 200
        blocked = _post(server, thief, x[expected - 1:expected + 4])  # holds the alarming query
        assert blocked.status_code == 403 and blocked.json() == {"error": "this key is blocked", "reason": "blocked"}
        assert store.usage(thief).used == expected + 4  # counted, not answered
        again = _post(server, thief, x[:1])
        assert again.status_code == 403 and store.usage(thief).used == expected + 4  # refused before counting
        assert _post(server, honest, streams["honest"][60:90]).status_code == 200
    [alarm] = store.alarms(_key_id(store, "thief"))
    assert (alarm["monitor"], alarm["action"], _alarm_query(alarm)) == ("ood", "block", expected)
    with _serve(model_file, store, *argv) as server:
        assert _post(server, thief, x[:1]).json() == {"error": "this key is blocked", "reason": "blocked"}
    assert main(["keys", "list", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert f"monitors: ood {expected + 4} queries ALARM; action in force: block" in out
    assert "monitors: ood 90 queries; action in force: none" in out


@pytest.mark.parametrize("argv, match", [
    (["--monitors", "prada", "--prada-delta", "1.5"], "--prada-delta must be in (0, 1], got 1.5"),
    (["--monitors", "ood", "--ood-ratio", "1"], "--ood-ratio must be > 1"),
    (["--monitors", "ood", "--ood-threshold", "0"], "--ood-threshold must be > 0"),
    (["--monitors", "classes", "--classes-min-count", "0"], "--classes-min-count must be >= 1"),
    (["--monitors", "prada,energy"], "--monitors must be distinct names"),
    (["--monitors", "prada", "--on-alarm", "kill"], "--on-alarm must be one of log, labels, block"),
    (["--prada-delta", "0.5"], "--monitors: --prada-delta given without monitors"),
    (["--monitors", "ood", "--calibration", "MISSING"], "no calibration there"),
])
def test_serve_detection_option_errors(model_file, argv, match, tmp_path, capsys):
    store = open_key_store(tmp_path / "keys.db", create=True)
    argv = [str(tmp_path / "missing.json") if a == "MISSING" else a for a in argv]
    assert main(["serve", "--victim", str(model_file), "--db", str(store.path), *argv, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err


def test_calibrate_errors(model_file, tmp_path, capsys):
    for argv, match in [(["--model", str(tmp_path / "none.onnx"), "--dataset", "digits"], "no .onnx file"),
                        (["--model", str(model_file), "--dataset", "digits", "--split", "test", "--offset", "300"],
                         "--images: digits test has"),
                        (["--model", str(model_file), "--dataset", "mnist", "--images", "10"], "the model takes"),
                        (["--model", str(model_file), "--dataset", "digits", "--quantile", "0.7", "--out",
                          str(tmp_path / "c.json")], "--quantile must be in (0, 0.5]")]:
        assert main(["detect", "calibrate", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, err
    assert json.loads(model_file.with_name("victim.calibration.json").read_text())["images"] == 180


def test_concurrent_requests_of_one_key_lose_no_rows(model_file, streams, tmp_path):
    """Eight threads on one key: the monitors' count is the key's count (one lock per key)."""
    from concurrent.futures import ThreadPoolExecutor

    from divqat.detection.codec import decode_state

    store = open_key_store(tmp_path / "keys.db", create=True)
    token = store.add("busy", 10_000)
    x = streams["honest"][:5]
    with _serve(model_file, store, "--monitors", "prada,ood,classes") as server:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: _post(server, token, x).status_code, range(80)))
    assert codes == [200] * 80 and store.usage(token).used == 400
    assert {name: int(decode_state(state)["n"]) for name, state in store.monitor_states(_key_id(store, "busy")).items()} == \
        {"prada": 400, "ood": 400, "classes": 400}
