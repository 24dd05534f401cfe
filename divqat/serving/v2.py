"""The Open Inference Protocol (KServe v2 REST) for one model: its metadata, the inference
request decoded into an input batch, the answers encoded as its inference response, JSON or
with the binary tensor data extension (the tensor bytes after a JSON header whose length is the
``Inference-Header-Content-Length`` header), as ``tritonclient.http`` sends and reads them.

The model has one input (FP32, shape [N, C, H, W], N <= max_batch) and one output (FP32,
[N, num_classes]): the defended answers. A request body is JSON (Content-Type application/json
or none, as the protocol's clients send it) unless ``Inference-Header-Content-Length`` is
present; the response is binary when the request asks for it (``binary_data_output`` in its
parameters, or ``binary_data`` in the parameters of the requested output).
"""
import math

import numpy as np
import orjson

from divqat.serving.errors import ClientError
from divqat.serving.inputs import check_rows, float32_rows, media_type, parse_json, pixels
from divqat.serving.protocol import BINARY, JSON

__all__ = ["HEADER_LENGTH", "VERSION", "model_metadata", "decode_infer_request", "encode_infer_response"]

HEADER_LENGTH = "inference-header-content-length"
VERSION = "1"


def model_metadata(name, input_name, output_name, input_shape, num_classes):
    """GET /v2/models/{name}: the model's name, version, platform and tensors (-1: any batch size)."""
    return {"name": name, "versions": [VERSION], "platform": "onnxruntime_onnx",
            "inputs": [{"name": input_name, "datatype": "FP32", "shape": [-1, *input_shape]}],
            "outputs": [{"name": output_name, "datatype": "FP32", "shape": [-1, num_classes]}]}


def decode_infer_request(body, headers, input_name, output_name, input_shape, max_batch):
    """The float32 (N, C, H, W) batch of an inference request and how to answer it: (x, binary
    output wanted, the request's id or None); ClientError 413/415/422 for a request it cannot serve."""
    content_type = media_type(headers)
    if headers.get("content-encoding", "identity").lower() != "identity":
        raise ClientError(415, "compressed request bodies are not supported: send them uncompressed")
    declared = headers.get(HEADER_LENGTH)
    if content_type not in ("", JSON) and not (declared is not None and content_type == BINARY):
        raise ClientError(415, f"send the body as {JSON}, or with the header Inference-Header-Content-Length "
                               f"for binary tensor data; got Content-Type {content_type}")
    header, tensor_bytes = _split(body, declared)
    request = parse_json(header, "the inference request")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise ClientError(422, f'the inference request must be a JSON object with "inputs": one tensor "{input_name}"')
    tensor = request["inputs"][0]
    x = _input_tensor(tensor, tensor_bytes, input_name, input_shape, max_batch)
    binary = _binary_output(request, output_name)
    request_id = request.get("id")
    return x, binary, request_id if isinstance(request_id, str) else None


def _split(body, declared):
    if declared is None:
        return body, b""
    if not declared.isdigit() or not 0 < int(declared) <= len(body):
        raise ClientError(422, f"Inference-Header-Content-Length must be the length of the JSON header, "
                               f"between 1 and the body's {len(body)} bytes, got {declared!r}")
    return body[:int(declared)], body[int(declared):]


def _input_tensor(tensor, tensor_bytes, input_name, input_shape, max_batch):
    if not isinstance(tensor, dict) or tensor.get("name") != input_name:
        raise ClientError(422, f'the model has one input, "{input_name}"')
    if tensor.get("datatype") != "FP32":
        raise ClientError(422, f'input "{input_name}" must have datatype FP32, got {tensor.get("datatype")!r}')
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 1 + len(input_shape)
            or not all(type(d) is int for d in shape) or tuple(shape[1:]) != tuple(input_shape) or shape[0] < 1):
        raise ClientError(422, f'input "{input_name}" must have shape [N, {", ".join(map(str, input_shape))}] '
                               f"with N >= 1, got {shape!r}")
    check_rows(shape[0], max_batch)
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ClientError(422, f'the parameters of input "{input_name}" must be a JSON object')
    size = parameters.get("binary_data_size")
    what = f'the binary data of input "{input_name}"'
    if size is not None:
        if "data" in tensor or type(size) is not int or size != len(tensor_bytes):
            raise ClientError(422, f"{what} must be the {len(tensor_bytes)} bytes after the JSON header, "
                                   f'named by "binary_data_size" and without "data"')
        x = float32_rows(tensor_bytes, input_shape, max_batch, what)
    elif tensor_bytes:
        raise ClientError(422, f'binary data after the JSON header, but input "{input_name}" has no "binary_data_size"')
    else:
        x = _json_data(tensor.get("data"), shape, input_name)
    if len(x) != shape[0]:
        raise ClientError(422, f'input "{input_name}" holds {len(x)} rows but its shape says {shape[0]}')
    return x


def _json_data(data, shape, input_name):
    """The JSON "data" of a tensor (flat row-major, or nested) as an array of ``shape``."""
    if not isinstance(data, list):
        raise ClientError(422, f'input "{input_name}" must hold its values in "data" (or as binary data)')
    try:
        values = np.array(data, dtype=object).ravel()
    except ValueError:
        values = None
    if values is None or values.size != math.prod(shape):
        raise ClientError(422, f'input "{input_name}": "data" must hold {math.prod(shape)} numbers '
                               f"(shape {shape}, flat or nested)")
    if not set(map(type, values)) <= {int, float}:  # a JSON boolean, string, null or a ragged list
        raise ClientError(422, f'input "{input_name}" must hold only numbers')
    return pixels(values.astype(np.float64).reshape(shape))


def _binary_output(request, output_name):
    parameters = request.get("parameters") or {}
    binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    outputs = request.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list) or any(not isinstance(o, dict) or o.get("name") != output_name for o in outputs):
        raise ClientError(422, f'the model has one output, "{output_name}"')
    return binary or any((o.get("parameters") or {}).get("binary_data") is True for o in outputs)


def encode_infer_response(model_name, output_name, answers, binary, request_id):
    """The body of an inference response and its headers, for float32 ``answers`` (N, num_classes)."""
    output = {"name": output_name, "datatype": "FP32", "shape": list(answers.shape)}
    response = {"model_name": model_name, "model_version": VERSION, "outputs": [output]}
    if request_id is not None:
        response["id"] = request_id
    if not binary:
        output["data"] = answers.ravel()
        return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), {"content-type": JSON}
    raw = np.ascontiguousarray(answers, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(response)
    return header + raw, {"content-type": BINARY, HEADER_LENGTH: str(len(header))}
