"""The wire format shared by the server (:mod:`divqat.serving.app`) and its client
(:mod:`divqat.serving.http_blackbox`): a request body is JSON ``{"inputs": N x C x H x W}``, or,
with this Content-Type, the same values as raw little-endian float32 (N from the length)."""

__all__ = ["BINARY"]

BINARY = "application/octet-stream"
