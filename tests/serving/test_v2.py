"""The Open Inference Protocol (KServe v2 REST) of `divqat serve`, driven by the unchanged
`tritonclient.http` from PyPI and by curl: health, model metadata, JSON tensors and the binary
tensor data extension answering exactly what ONNX Runtime answers, the same Bearer keys and
budgets (an exhausted budget is a 429 with nothing answered), and errors in the client's terms."""
import json
import subprocess

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from serving_helpers import MAX_BATCH, assert_error, serve
from tritonclient.utils import InferenceServerException

MODEL = "digits-dcp"


@pytest.fixture(scope="module")
def store(sqlite_store):
    return sqlite_store


@pytest.fixture(scope="module")
def server(model_file, store):
    s = serve(model_file, store.location, "--model-name", MODEL)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def expected(model_file, images):
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images[:MAX_BATCH].numpy()})[0]


def _infer(client, token, x, binary_input, binary_output):
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_input)
    output = triton.InferRequestedOutput("answers", binary_data=binary_output)
    return client.infer(MODEL, [tensor], outputs=[output], headers={"Authorization": f"Bearer {token}"})


def test_health_and_metadata(client, server):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert not client.is_model_ready("another-model")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert metadata["outputs"] == [{"name": "answers", "datatype": "FP32", "shape": [-1, 10]}]
    assert_error(httpx.get(server.url + "/v2/models/another-model"), 404, "no model named 'another-model'")


@pytest.mark.parametrize("binary_input, binary_output", [(False, False), (True, True), (True, False)])
def test_tritonclient_gets_the_defended_answers_and_is_counted(client, store, images, expected, binary_input,
                                                              binary_output):
    token = store.add(f"triton-{binary_input}-{binary_output}", 100)
    x = images[:37].numpy()
    result = _infer(client, token, x, binary_input, binary_output)
    np.testing.assert_array_equal(result.as_numpy("answers"), expected[:37])
    assert result.get_response()["model_name"] == MODEL
    assert store.usage(token).used == 37


def test_exhausted_budget_is_a_429_with_nothing_answered(client, store, images, expected):
    token = store.add("triton-budget", 50)
    np.testing.assert_array_equal(_infer(client, token, images[:40].numpy(), True, True).as_numpy("answers"),
                                  expected[:40])
    with pytest.raises(InferenceServerException) as refused:
        _infer(client, token, images[:11].numpy(), True, True)
    assert refused.value.status() == "429" and "10 of its budget of 50 left" in refused.value.message()
    assert store.usage(token).used == 40
    with pytest.raises(InferenceServerException) as unknown:
        _infer(client, "dqk_not-a-key", images[:1].numpy(), False, False)
    assert unknown.value.status() == "401"


def _curl(*argv, stdin=None):
    """curl's (status, body) of a request; ``stdin``: the bytes of ``--data-binary @-``."""
    done = subprocess.run(["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", *argv],
                          input=stdin, capture_output=True, check=True, timeout=90)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


def test_curl_json_and_binary(server, store, images, expected):
    token = store.add("curl", 100)
    url = f"{server.url}/v2/models/{MODEL}/infer"
    auth = ["-H", f"Authorization: Bearer {token}"]
    x = images[:3].numpy()
    request = {"id": "r1", "inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32",
                                       "data": x.ravel().tolist()}]}
    status, body = _curl(*auth, "-H", "Content-Type: application/json", "--data-binary", json.dumps(request), url)
    answer = json.loads(body)
    assert status == 200 and answer["id"] == "r1" and answer["outputs"][0]["shape"] == [3, 10]
    np.testing.assert_array_equal(np.array(answer["outputs"][0]["data"], np.float32).reshape(3, 10), expected[:3])
    header = json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    status, body = _curl("-i", *auth, "-H", "Content-Type: application/octet-stream", "-H",
                         f"Inference-Header-Content-Length: {len(header)}", "--data-binary", "@-", url,
                         stdin=header + x.astype("<f4").tobytes())
    head, _, payload = body.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"inference-header-content-length")))
    meta = json.loads(payload[:length])
    assert status == 200 and meta["outputs"][0]["parameters"] == {"binary_data_size": 3 * 10 * 4}
    np.testing.assert_array_equal(np.frombuffer(payload[length:], "<f4").reshape(3, 10), expected[:3])
    assert store.usage(token).used == 6


def _tensor(**overrides):
    return {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64,
                        **overrides}]}


@pytest.mark.parametrize("body, headers, status, match", [
    (json.dumps(_tensor()), {"Content-Type": "text/plain"}, 415, "got Content-Type text/plain"),
    (json.dumps(_tensor()), {"Content-Encoding": "gzip"}, 415, "compressed"),
    (b'{"inputs": [', {}, 422, "the inference request is not valid JSON"),
    (json.dumps(_tensor(name="image")), {}, 422, 'one input, "input"'),
    (json.dumps(_tensor(datatype="FP64")), {}, 422, "datatype FP32, got 'FP64'"),
    (json.dumps(_tensor(shape=[1, 3, 8, 8])), {}, 422, "shape [N, 1, 8, 8]"),
    (json.dumps(_tensor(shape=[MAX_BATCH + 1, 1, 8, 8])), {}, 413, "max_batch"),
    (json.dumps(_tensor(data=[0.5] * 63)), {}, 422, "must hold 64 numbers"),
    (json.dumps(_tensor(data=[True] + [0.5] * 63)), {}, 422, "only numbers"),
    (json.dumps(_tensor(data=[2.0] + [0.5] * 63)), {}, 422, "[0, 1]"),
    (json.dumps({"inputs": _tensor()["inputs"], "outputs": [{"name": "probabilities"}]}), {}, 422,
     'one output, "answers"'),
    (json.dumps(_tensor(parameters={"binary_data_size": 256})).encode() + b"\0" * 252,
     {"Inference-Header-Content-Length": str(len(json.dumps(_tensor(parameters={"binary_data_size": 256}))))},
     422, "must be the 252 bytes"),
    (json.dumps(_tensor()), {"Inference-Header-Content-Length": "99999"}, 422, "Inference-Header-Content-Length"),
])
def test_bad_requests_say_what_is_wrong_and_count_nothing(server, store, body, headers, status, match):
    token = store.add(f"bad-{abs(hash((str(body), str(headers))))}", 10)
    response = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=body,
                          headers={"Authorization": f"Bearer {token}", **headers})
    assert_error(response, status, match)
    assert store.usage(token).used == 0
