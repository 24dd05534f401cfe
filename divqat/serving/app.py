"""The prediction API: a Starlette app run by uvicorn, ONNX Runtime behind it, budgets in SQLite.

    GET  /healthz      {"status": "ok"}
    GET  /v1/meta      input_shape, num_classes, meta (normalisation), arch, answers, defense (its
                       name, never its parameters), max_batch
    GET  /v1/usage     (Bearer) {"queries_used": int, "budget_left": int} of the caller's key
    POST /v1/predict   (Bearer) {"inputs": N x C x H x W floats in [0, 1]}, or with
                       Content-Type application/octet-stream the same N x C x H x W values as
                       little-endian float32 (N from the length; no JSON to parse)
                       -> {"outputs": N x num_classes, "queries_used": int, "budget_left": int}

Every error is JSON ``{"error": "..."}``: 401 (missing, unknown or revoked token), 429 (the
batch does not fit in the key's remaining budget, ``"reason": "budget"``: refused whole,
nothing answered or counted; or the key's rate limit, ``"reason": "rate"`` with Retry-After),
413 (more rows than max_batch, or a body larger than max_batch rows can need), 422 (bad JSON,
wrong shape, non-numeric, non-finite or out-of-range values), 404/405, and 500 with a fixed
message (the traceback goes to the server's log, never to the client).

With monitors (``divqat serve --monitors``, :mod:`divqat.detection`), a counted request's rows
are fed to the key's monitors before they are answered; a key whose alarm put ``labels`` in
force gets one-hot answers, and one under ``block`` gets 403 ``"reason": "blocked"`` (the
request that raised the alarm included: counted, not answered). Nothing else about the
monitors reaches the client.

A request is validated, then its rows are counted (:meth:`divqat.serving.keys.KeyStore.charge`,
one write transaction), then answered: a row is never answered uncounted (a request that fails
after its count, a 500 or a crash, stays counted: answered <= counted).

Why Starlette and not FastAPI: the API is four routes whose bodies are validated by hand
against the model's input shape (a pydantic model of a 4-D float list would be slower and
answer its own 422 format); Starlette is the ASGI toolkit FastAPI is built on, maintained by
the authors of uvicorn and httpx, with one dependency (anyio) instead of FastAPI's pydantic stack.
"""
import json
import logging
import math

import numpy as np
import onnx
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from divqat.checks import check_int
from divqat.serving.keys import KeyStore
from divqat.serving.metadata import serving_info
from divqat.serving.protocol import BINARY

__all__ = ["Predictor", "create_app", "decode_body", "parse_inputs", "BYTES_PER_VALUE"]

#: JSON bytes allowed per input value (e.g. "0.12345678901234568, " is 21): bounds the body size
BYTES_PER_VALUE = 32
_LOG = logging.getLogger("divqat.serving")


class Predictor:
    """A defended ONNX model (from :func:`divqat.serving.export.export_defended`) on ONNX Runtime.

    ``threads``: ONNX Runtime intra-op threads per request (the server runs requests concurrently).
    ``predictor(x)``: float32 (N, C, H, W) -> float32 answers (N, num_classes).
    """

    def __init__(self, model, threads=1):
        if not isinstance(model, onnx.ModelProto):
            try:
                model = onnx.load_from_string(bytes(model))
            except Exception as exc:  # protobuf's DecodeError and friends
                raise ValueError(f"--victim: not a valid ONNX model ({exc})") from None
        self.info = serving_info(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self._input: x})[0]

    def with_logits(self, x):
        """``(answers, the victim's logits)`` of a model built by :func:`divqat.detection.graph.expose_logits`."""
        answers, logits = self.session.run(None, {self._input: x})[:2]
        return answers, logits


class _ClientError(Exception):
    def __init__(self, status, message, headers=None, **extra):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


def _error(status, message, headers=None, **extra):
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _unknown_key():
    return _ClientError(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})


def _bearer(request):
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _ClientError(401, "missing API key: send the header 'Authorization: Bearer TOKEN'",
                           {"WWW-Authenticate": "Bearer"})
    return token


def decode_body(body, input_shape, max_batch, content_type="application/json"):
    """The float32 (N, C, H, W) batch of a request body (bytes), or _ClientError 413/422;
    ``content_type`` BINARY: raw little-endian float32, anything else: JSON."""
    if content_type == BINARY:
        return _binary_inputs(body, input_shape, max_batch)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _ClientError(422, f"the body is not valid JSON ({type(exc).__name__}: {exc})") from None
    if b"true" in body or b"false" in body:  # numpy would read a JSON boolean as 0 or 1
        raise _ClientError(422, "inputs must hold only numbers")
    return parse_inputs(payload, input_shape, max_batch)


def parse_inputs(payload, input_shape, max_batch):
    """The float32 (N, C, H, W) batch of a decoded JSON body, or _ClientError 413/422."""
    if not isinstance(payload, dict) or set(payload) != {"inputs"}:
        raise _ClientError(422, 'the body must be a JSON object {"inputs": [...]} and nothing else')
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise _ClientError(422, "inputs must be a nonempty list of images")
    _check_rows(len(inputs), max_batch)
    expected = (len(inputs), *input_shape)
    try:
        x = np.array(inputs)
    except (ValueError, TypeError):
        x = None
    if x is None or x.shape != expected:
        got = "ragged lists" if x is None or x.dtype == object else f"shape {list(x.shape)}"
        raise _ClientError(422, f"inputs must have shape {list(expected)} (N x C x H x W), got {got}")
    if x.dtype.kind not in "iuf":
        raise _ClientError(422, "inputs must hold only numbers")
    return _pixels(x)


def _binary_inputs(body, input_shape, max_batch):
    row = 4 * math.prod(input_shape)
    if not body or len(body) % row:
        raise _ClientError(422, f"an {BINARY} body must hold N x {' x '.join(map(str, input_shape))} little-endian "
                                f"float32 values ({row} bytes per image, N >= 1), got {len(body)} bytes")
    _check_rows(len(body) // row, max_batch)
    return _pixels(np.frombuffer(body, dtype="<f4").reshape(-1, *input_shape))


def _check_rows(n, max_batch):
    if n > max_batch:
        raise _ClientError(413, f"batch of {n} rows is larger than the server's max_batch {max_batch}")


def _pixels(x):
    """``x`` as a new native float32 array, or 422 unless every value is finite and in [0, 1]."""
    if not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise _ClientError(422, "inputs must be finite pixel values in [0, 1]")
    return x.astype(np.float32)


def _answer(predictor, x, charge):
    """The 200 body: the model's answers and the key's counts, as JSON bytes."""
    outputs = predictor(x).tolist()
    return json.dumps({"outputs": outputs, "queries_used": charge.used, "budget_left": charge.left}).encode()


async def _read_body(request, limit):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _ClientError(413, f"body of {declared} bytes is larger than the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _ClientError(413, f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _blocked():
    from divqat.detection.watch import BLOCKED

    return _ClientError(403, BLOCKED["message"], reason=BLOCKED["reason"])


def _watched_answer(predictor, watch, key_id, x, charge):
    """:func:`_answer` under the key's monitors: 403 or labels only when the action in force says so."""
    from divqat.detection.graph import softmax64
    from divqat.detection.watch import labels_only

    answers, logits = predictor.with_logits(x)
    probs = softmax64(logits)
    action = watch.observe(key_id, x, probs)
    if action == "block":
        raise _blocked()
    outputs = labels_only(probs) if action == "labels" else answers
    return json.dumps({"outputs": outputs.tolist(), "queries_used": charge.used, "budget_left": charge.left}).encode()


def _watch(model, store, detection, threads):
    """``(predictor, watch)``: the model with its logits exposed and the monitors of ``detection``
    (:func:`divqat.detection.options.detection_config`); ``(None, None)`` without detection."""
    if detection is None:
        return None, None
    from divqat.detection.graph import expose_logits
    from divqat.detection.registry import build_monitors
    from divqat.detection.watch import Watch

    predictor = Predictor(expose_logits(model), threads=threads)
    info = predictor.info
    monitors = build_monitors(detection["monitors"], detection["thresholds"], info["num_classes"],
                              info["input_shape"], detection["calibration"])
    return predictor, Watch(store, monitors, detection["on_alarm"])


def create_app(model, db, max_batch=1024, threads=1, synchronous="FULL", detection=None):
    """The ASGI app serving ``model`` (a defended ModelProto, its bytes, or a :class:`Predictor`)
    with the key database at ``db`` (a path; the file must exist; ``synchronous`` as in
    :class:`~divqat.serving.keys.KeyStore`) and at most ``max_batch`` rows per request;
    ``detection``: the per-key monitors (:mod:`divqat.detection`), None for none."""
    check_int("--max-batch", max_batch, 1)
    store = KeyStore(db, synchronous=synchronous)
    predictor, watch = _watch(model, store, detection, threads)
    if predictor is None:
        predictor = model if isinstance(model, Predictor) else Predictor(model, threads=threads)
    info = predictor.info
    shape = tuple(info["input_shape"])
    body_limit = max_batch * math.prod(shape) * BYTES_PER_VALUE + 4096
    meta = {key: info[key] for key in ("input_shape", "num_classes", "meta", "arch", "answers", "defense")}
    meta.update(max_batch=max_batch, input_formats=["application/json", BINARY])

    async def healthz(request):
        return JSONResponse({"status": "ok"})

    async def v1_meta(request):
        return JSONResponse(meta)

    async def v1_usage(request):
        charge = await run_in_threadpool(store.usage, _bearer(request))
        if charge.status != "ok":
            raise _unknown_key()
        return JSONResponse({"queries_used": charge.used, "budget_left": charge.left})

    async def v1_predict(request):
        token = _bearer(request)
        if (await run_in_threadpool(store.usage, token)).status != "ok":
            raise _unknown_key()
        key_id = None if watch is None else await run_in_threadpool(store.key_id, token)
        if watch is not None and await run_in_threadpool(watch.action, key_id) == "block":
            raise _blocked()
        body = await _read_body(request, body_limit)
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        x = await run_in_threadpool(decode_body, body, shape, max_batch, content_type)
        charge = await run_in_threadpool(store.charge, token, len(x))
        if charge.status == "unauthorized":
            raise _unknown_key()
        if charge.status == "budget":
            raise _ClientError(429, f"batch of {len(x)} rows refused: the key has {charge.left} of its budget of "
                               f"{charge.budget} left", reason="budget", queries_used=charge.used,
                               budget_left=charge.left)
        if charge.status == "rate":
            retry = {"Retry-After": str(math.ceil(charge.retry_after))}
            raise _ClientError(429, "rate limit of the key exceeded", retry,
                               reason="rate", retry_after=charge.retry_after)
        if watch is None:
            content = await run_in_threadpool(_answer, predictor, x, charge)
        else:
            content = await run_in_threadpool(_watched_answer, predictor, watch, key_id, x, charge)
        return Response(content, media_type="application/json")

    async def client_error(request, exc):
        return _error(exc.status, exc.message, exc.headers, **exc.extra)

    async def http_error(request, exc):
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    async def server_error(request, exc):
        _LOG.error("error while answering %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal server error")

    routes = [Route("/healthz", healthz), Route("/v1/meta", v1_meta), Route("/v1/usage", v1_usage),
              Route("/v1/predict", v1_predict, methods=["POST"])]
    handlers = {_ClientError: client_error, HTTPException: http_error, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers)
