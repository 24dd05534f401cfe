"""The wire format shared by the server (:mod:`divqat.serving.app`) and its client
(:mod:`divqat.serving.http_blackbox`): a /v1 request body is JSON ``{"inputs": N x C x H x W}``
(Content-Type :data:`JSON`), or the same values as raw little-endian float32 (Content-Type
:data:`BINARY`, N from the length)."""

__all__ = ["BINARY", "JSON"]

BINARY = "application/octet-stream"
JSON = "application/json"
