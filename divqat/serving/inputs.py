"""Request bodies to input batches: JSON parsed with orjson, raw float32 read in place, and the
checks every batch passes (shape, row count, finite pixels in [0, 1]); each refusal is a
:class:`~divqat.serving.errors.ClientError` whose message says what is wrong with the request.

The /v1 body (:func:`decode_body`): JSON ``{"inputs": N x C x H x W}`` with Content-Type
application/json, or the same values as little-endian float32 with Content-Type
application/octet-stream (:data:`~divqat.serving.protocol.BINARY`); anything else is a 415.
"""
import math

import numpy as np
import orjson

from divqat.serving.errors import ClientError
from divqat.serving.protocol import BINARY, JSON

__all__ = ["decode_body", "parse_inputs", "parse_json", "media_type", "check_rows", "pixels", "float32_rows"]


def media_type(headers):
    """The Content-Type of a request without its parameters, lower case ("" when absent)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def parse_json(body, what="the body"):
    """The decoded JSON of ``body`` (bytes), or a 422 that says where it stops being JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClientError(422, f"{what} is not valid JSON ({exc.msg} at byte {exc.pos})") from None


def decode_body(body, input_shape, max_batch, content_type=JSON):
    """The float32 (N, C, H, W) batch of a /v1 request body (bytes), or ClientError 413/415/422."""
    if content_type == BINARY:
        return float32_rows(body, input_shape, max_batch, f"an {BINARY} body")
    if content_type != JSON:
        got = f"Content-Type {content_type}" if content_type else "no Content-Type"
        raise ClientError(415, f"send the body as {JSON} or {BINARY}, got {got}")
    x = parse_inputs(parse_json(body), input_shape, max_batch)
    # numpy reads a JSON boolean as 0 or 1. The body is now {"inputs": numbers}: JSON numbers
    # hold no "t" or "f" and the key one "t", so another "t", or an "f", is a true or a false.
    if body.count(b"t") > 1 or b"f" in body:
        raise ClientError(422, "inputs must hold only numbers")
    return x


def parse_inputs(payload, input_shape, max_batch):
    """The float32 (N, C, H, W) batch of a decoded JSON body, or ClientError 413/422."""
    if not isinstance(payload, dict) or set(payload) != {"inputs"}:
        raise ClientError(422, 'the body must be a JSON object {"inputs": [...]} and nothing else')
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise ClientError(422, "inputs must be a nonempty list of images")
    check_rows(len(inputs), max_batch)
    expected = (len(inputs), *input_shape)
    try:
        x = np.array(inputs)
    except (ValueError, TypeError):
        x = None
    if x is None or x.shape != expected:
        got = "ragged lists" if x is None or x.dtype == object else f"shape {list(x.shape)}"
        raise ClientError(422, f"inputs must have shape {list(expected)} (N x C x H x W), got {got}")
    if x.dtype.kind not in "iuf":
        raise ClientError(422, "inputs must hold only numbers")
    return pixels(x)


def float32_rows(data, input_shape, max_batch, what):
    """The (N, C, H, W) batch held in ``data`` as little-endian float32 (N from its length)."""
    row = 4 * math.prod(input_shape)
    if not data or len(data) % row:
        raise ClientError(422, f"{what} must hold N x {' x '.join(map(str, input_shape))} little-endian "
                               f"float32 values ({row} bytes per image, N >= 1), got {len(data)} bytes")
    check_rows(len(data) // row, max_batch)
    return pixels(np.frombuffer(data, dtype="<f4").reshape(-1, *input_shape))


def check_rows(n, max_batch):
    if n > max_batch:
        raise ClientError(413, f"batch of {n} rows is larger than the server's max_batch {max_batch}")


def pixels(x):
    """``x`` as a native float32 array, or 422 unless every value is finite and in [0, 1]."""
    if not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise ClientError(422, "inputs must be finite pixel values in [0, 1]")
    return x.astype(np.float32, copy=False)
