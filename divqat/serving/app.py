"""The prediction API: a Starlette app run by uvicorn, ONNX Runtime behind it, budgets in a key
store (SQLite or PostgreSQL, :mod:`divqat.serving.keys`).

divqat's own routes:

    GET  /healthz      {"status": "ok"}
    GET  /v1/meta      input_shape, num_classes, meta (normalisation), arch, answers, defense (its
                       name, never its parameters), max_batch, input_formats, model_name
    GET  /v1/usage     (Bearer) {"queries_used": int, "budget_left": int} of the caller's key
    POST /v1/predict   (Bearer) {"inputs": N x C x H x W floats in [0, 1]} with Content-Type
                       application/json, or the same values as little-endian float32 with
                       Content-Type application/octet-stream (N from the length)
                       -> {"outputs": N x num_classes, "queries_used": int, "budget_left": int}

The Open Inference Protocol (KServe v2 REST, :mod:`divqat.serving.v2`), for its standard
clients (``tritonclient.http``, the KServe SDK):

    GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer    (Bearer) JSON tensors or the binary tensor data extension

Every error is JSON ``{"error": "..."}`` in the client's terms: 401 (missing, unknown or
revoked token), 429 (the batch does not fit in the key's remaining budget, ``"reason":
"budget"``: refused whole, nothing answered or counted; or the key's rate limit, ``"reason":
"rate"`` with Retry-After), 413 (more rows than max_batch, or a body larger than max_batch rows
can need), 415 (a body in a format the route does not read), 422 (bad JSON, wrong shape,
non-numeric, non-finite or out-of-range values), 404/405, and 500 with a fixed message (the
traceback goes to the server's log, never to the client).

With monitors (``divqat serve --monitors``, :mod:`divqat.detection`), a counted request's rows
are fed to the key's monitors before they are answered; a key whose alarm put ``labels`` in
force gets one-hot answers, and one under ``block`` gets 403 ``"reason": "blocked"`` (the
request that raised the alarm included: counted, not answered). Nothing else about the
monitors reaches the client.

Every prediction, /v1 or /v2, goes through one path (``answer`` in :func:`create_app`): the key
is checked, the body read and decoded, the rows counted (:meth:`KeyStore.charge`, committed),
then answered: a row is never answered uncounted (a request that fails after its count, a 500
or a crash, stays counted: answered <= counted).

Why Starlette and not FastAPI: the routes' bodies are validated by hand against the model's input
shape (a pydantic model of a 4-D float list would be slower and answer its own 422 format);
Starlette is the ASGI toolkit FastAPI is built on, with one dependency (anyio).
"""
import logging
import math
import re

import onnx
import onnxruntime as ort
import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from divqat.checks import check_int, error_line
from divqat.serving import v2
from divqat.serving.errors import ClientError, missing_key, unknown_key
from divqat.serving.inputs import decode_body, media_type
from divqat.serving.key_stores import open_key_store
from divqat.serving.keys import KeyStore
from divqat.serving.metadata import serving_info
from divqat.serving.protocol import BINARY, JSON

__all__ = ["Predictor", "create_app", "check_model_name", "BYTES_PER_VALUE", "MAX_BATCH_CEILING"]

#: JSON bytes allowed per input value (e.g. "0.12345678901234568, " is 21): bounds the body size
BYTES_PER_VALUE = 32
#: the most rows a request may hold (--max-batch): 4096 RGB 32x32 images as JSON are 400 MB
MAX_BATCH_CEILING = 4096
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
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
                raise ValueError(f"--victim: not a valid ONNX model ({error_line(exc)})") from None
        self.info = serving_info(model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model.SerializeToString(), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x):
        return self.session.run(None, {self.input_name: x})[0]

    def with_logits(self, x):
        """``(answers, the victim's logits)`` of a model built by :func:`divqat.detection.graph.expose_logits`."""
        answers, logits = self.session.run(None, {self.input_name: x})[:2]
        return answers, logits


def check_model_name(name):
    """``name``, or ValueError unless it is 1-64 letters, digits or _.- (a URL path segment)."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ValueError(f"--model-name must be 1-64 letters, digits or _.- (starting with a letter or digit), "
                         f"got {name!r}")
    return name


def _error(status, message, headers=None, **extra):
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _bearer(request):
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise missing_key()
    return token


def _refusal(charge, rows):
    """The ClientError of a charge that was not "ok"."""
    if charge.status == "budget":
        return ClientError(429, f"batch of {rows} rows refused: the key has {charge.left} of its budget of "
                                f"{charge.budget} left", reason="budget", queries_used=charge.used,
                           budget_left=charge.left)
    if charge.status == "rate":
        return ClientError(429, "rate limit of the key exceeded", {"Retry-After": str(math.ceil(charge.retry_after))},
                           reason="rate", retry_after=charge.retry_after)
    return unknown_key()


async def _read_body(request, limit):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"body of {declared} bytes is larger than the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _blocked():
    from divqat.detection.watch import BLOCKED

    return ClientError(403, BLOCKED["message"], reason=BLOCKED["reason"])


def _watch(model, store, detection, threads):
    """``(predictor, watch)``: the model with its logits exposed and the monitors of ``detection``
    (:func:`divqat.detection.options_command.detection_config`); ``(None, None)`` without detection."""
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


def _watched(predictor, watch, key_id, x):
    """The answers to ``x`` under the key's monitors: 403 or labels only when the action in force says so."""
    from divqat.detection.graph import softmax64
    from divqat.detection.watch import labels_only

    answers, logits = predictor.with_logits(x)
    probs = softmax64(logits)
    action = watch.observe(key_id, x, probs)
    if action == "block":
        raise _blocked()
    return labels_only(probs).astype(answers.dtype, copy=False) if action == "labels" else answers


def create_app(model, db, max_batch=1024, threads=1, synchronous="FULL", model_name="divqat", detection=None):
    """The ASGI app serving ``model`` (a defended ModelProto, its bytes, or a :class:`Predictor`)
    with the key store ``db`` (a :class:`KeyStore`, or where one is: a SQLite path or a
    postgresql:// URL, opened with ``synchronous``), at most ``max_batch`` rows per request, and
    the name ``model_name`` in the /v2 routes; ``detection``: the per-key monitors
    (:mod:`divqat.detection`), None for none. The store is ``app.state.store``."""
    check_int("--max-batch", max_batch, 1, MAX_BATCH_CEILING)
    check_model_name(model_name)
    store = db if isinstance(db, KeyStore) else open_key_store(db, synchronous=synchronous)
    predictor, watch = _watch(model, store, detection, threads)
    if predictor is None:
        predictor = model if isinstance(model, Predictor) else Predictor(model, threads=threads)
    info = predictor.info
    shape = tuple(info["input_shape"])
    body_limit = max_batch * math.prod(shape) * BYTES_PER_VALUE + 4096
    meta = {key: info[key] for key in ("input_shape", "num_classes", "meta", "arch", "answers", "defense")}
    meta.update(max_batch=max_batch, input_formats=[JSON, BINARY], model_name=model_name)
    v2_metadata = v2.model_metadata(model_name, predictor.input_name, predictor.output_name, shape,
                                    info["num_classes"])

    async def answer(request, decode):
        """The one path of every prediction: the key checked, the body read, then (one worker
        thread) decoded by ``decode(body, headers) -> (x, context)``, its rows counted and
        committed, and the model run. Returns (answers, charge, context)."""
        token = _bearer(request)
        usage = await run_in_threadpool(store.usage, token)
        if usage.status != "ok":
            raise unknown_key()
        if watch is not None and usage.action == "block":
            raise _blocked()
        body = await _read_body(request, body_limit)
        return await run_in_threadpool(charged_answer, token, body, request.headers, decode)

    def charged_answer(token, body, headers, decode):
        x, context = decode(body, headers)
        charge = store.charge(token, len(x))
        if charge.status != "ok":
            raise _refusal(charge, len(x))
        answers = predictor(x) if watch is None else _watched(predictor, watch, charge.key_id, x)
        return answers, charge, context

    def decode_v1(body, headers):
        return decode_body(body, shape, max_batch, media_type(headers)), None

    def decode_v2(body, headers):
        x, binary, request_id = v2.decode_infer_request(body, headers, predictor.input_name,
                                                        predictor.output_name, shape, max_batch)
        return x, (binary, request_id)

    async def healthz(request):
        return JSONResponse({"status": "ok"})

    async def v1_meta(request):
        return JSONResponse(meta)

    async def v1_usage(request):
        charge = await run_in_threadpool(store.usage, _bearer(request))
        if charge.status != "ok":
            raise unknown_key()
        return JSONResponse({"queries_used": charge.used, "budget_left": charge.left})

    async def v1_predict(request):
        answers, charge, _ = await answer(request, decode_v1)
        body = {"outputs": answers, "queries_used": charge.used, "budget_left": charge.left}
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)

    def model_route(request):
        if request.path_params["name"] != model_name:
            raise ClientError(404, f"no model named {request.path_params['name']!r}: this server serves "
                                   f"{model_name!r}")

    async def v2_server(request):
        return JSONResponse({"name": "divqat", "version": "1", "extensions": ["binary_tensor_data"]})

    async def v2_health(request):
        return JSONResponse({})

    async def v2_model(request):
        model_route(request)
        return JSONResponse(v2_metadata)

    async def v2_model_ready(request):
        model_route(request)
        return JSONResponse({})

    async def v2_infer(request):
        model_route(request)
        answers, _, (binary, request_id) = await answer(request, decode_v2)
        content, headers = v2.encode_infer_response(model_name, predictor.output_name, answers, binary, request_id)
        return Response(content, headers=headers)

    async def client_error(request, exc):
        return _error(exc.status, exc.message, exc.headers, **exc.extra)

    async def http_error(request, exc):
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    async def server_error(request, exc):
        _LOG.error("error while answering %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal server error")

    routes = [Route("/healthz", healthz), Route("/v1/meta", v1_meta), Route("/v1/usage", v1_usage),
              Route("/v1/predict", v1_predict, methods=["POST"]),
              Route("/v2", v2_server), Route("/v2/health/live", v2_health), Route("/v2/health/ready", v2_health),
              Route("/v2/models/{name}", v2_model), Route("/v2/models/{name}/ready", v2_model_ready),
              Route("/v2/models/{name}/infer", v2_infer, methods=["POST"])]
    handlers = {ClientError: client_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.store = store
    return app
