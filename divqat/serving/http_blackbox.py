"""A served model as a black box: what the attacks of :mod:`divqat.attacks` query by URL.

``HttpBlackBox(url, api_key)`` has the part of :class:`divqat.blackbox.BlackBox` the attacks
use (``query``, ``queries_used``, ``budget_left``, ``meta``, ``num_classes``, ``input_shape``,
``arch``, ``output``, ``defense_id``). It reads ``/v1/meta`` and ``/v1/usage`` once, then sends
each query in batches of at most the server's ``max_batch`` rows over one httpx connection
pool (keep-alive), as raw little-endian float32 bodies (``application/octet-stream``: no JSON
to encode or parse; the server's inputs are then exactly the tensor's values). Answers come back
as float32 tensors, exactly the server's float32 values (JSON carries each as the shortest
decimal that reads back to it).

Counting is the server's: a query larger than the key's ``budget_left`` is refused whole
before anything is sent (:class:`~divqat.blackbox.QueryBudgetExceeded`), and a 429 "budget"
answer (another client spent the key) raises the same exception; a 429 "rate" answer is
waited out (its Retry-After) and resent (``rate_waits`` counts the waits). After every answer
``server_queries_used`` is the server's count for the key and ``queries_used`` the rows this
object had answered.
"""
import time

import httpx
import torch

from divqat.blackbox import QueryBudgetExceeded
from divqat.serving.protocol import BINARY

__all__ = ["HttpBlackBox", "ServerError", "is_url"]


def is_url(victim):
    """True when ``--victim`` names a server (http:// or https://) rather than a directory."""
    return str(victim).startswith(("http://", "https://"))


class ServerError(RuntimeError):
    """The server refused a request for a reason other than the budget (its JSON error quoted)."""


class HttpBlackBox:
    """The model served at ``url`` (``divqat serve``), queried with ``api_key``.

    Args:
        url: the server's base URL, e.g. http://127.0.0.1:8000.
        api_key: the key's token (``divqat keys add``).
        timeout: seconds per request.
        max_rate_waits: how many 429 "rate" answers in a row are waited out before giving up.
    """

    def __init__(self, url, api_key, timeout=120.0, max_rate_waits=100):
        if not is_url(url):
            raise ValueError(f"--victim {url!r}: a server URL must start with http:// or https://")
        try:
            if not httpx.URL(str(url)).host:
                raise httpx.InvalidURL("no host")
        except httpx.InvalidURL as exc:
            raise ValueError(f"--victim {url!r}: not a valid server URL ({exc})") from None
        if not api_key:
            raise ValueError("--api-key: a served victim needs an API key (or the DIVQAT_API_KEY variable)")
        self.url = str(url).rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout,
                                    headers={"Authorization": f"Bearer {api_key}"})
        self.max_rate_waits = max_rate_waits
        info = self._get("/v1/meta")
        self.meta, self.arch, self.max_batch = info["meta"], info["arch"], int(info["max_batch"])
        self.output, self.defense_id = info["answers"], info["defense"]
        self.num_classes, self.input_shape = int(info["num_classes"]), tuple(info["input_shape"])
        usage = self._get("/v1/usage")
        self.server_queries_used, self.budget_left = usage["queries_used"], usage["budget_left"]
        self.queries_used = 0
        self.rate_waits = 0

    def _get(self, path):
        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise ValueError(f"--victim {self.url}: cannot reach the server ({exc})") from None
        if response.status_code == 401:
            raise ValueError(f"--api-key: the server at {self.url} refused the key ({_message(response)})")
        if response.status_code != 200:
            raise ServerError(f"GET {path}: HTTP {response.status_code}: {_message(response)}")
        return response.json()

    def query(self, x):
        """Answers (N, num_classes) for a float batch x (N, C, H, W) in [0, 1]; N rows counted by the server."""
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (N, {', '.join(map(str, self.input_shape))}), got {got}")
        n = x.shape[0]
        if n > self.budget_left:
            raise QueryBudgetExceeded(f"query of {n} inputs refused: the key has {self.budget_left} queries left "
                                      f"({self.server_queries_used} used)")
        rows = x.detach().to("cpu", torch.float32)
        outs = [self._predict(rows[i:i + self.max_batch]) for i in range(0, n, self.max_batch)]
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes)

    def _predict(self, batch):
        body = batch.numpy().astype("<f4").tobytes()
        for _ in range(self.max_rate_waits + 1):
            response = self._client.post("/v1/predict", content=body, headers={"Content-Type": BINARY})
            if response.status_code != 429 or response.json().get("reason") != "rate":
                break
            self.rate_waits += 1
            time.sleep(float(response.headers.get("retry-after", 1)))
        if response.status_code == 429 and response.json().get("reason") == "budget":
            raise QueryBudgetExceeded(f"the server refused {len(batch)} rows: {_message(response)}")
        if response.status_code != 200:
            raise ServerError(f"POST /v1/predict: HTTP {response.status_code}: {_message(response)}")
        answer = response.json()
        self.server_queries_used, self.budget_left = answer["queries_used"], answer["budget_left"]
        self.queries_used += len(batch)
        return torch.tensor(answer["outputs"], dtype=torch.float32)

    def identity(self):
        raise ValueError("the answers of a served victim are not cached: drop --cache-dir")

    def close(self):
        self._client.close()

    def __repr__(self):
        return (f"HttpBlackBox(url={self.url!r}, arch={self.arch!r}, answers={self.output!r}, "
                f"defense={self.defense_id!r}, queries_used={self.queries_used}, budget_left={self.budget_left})")


def _message(response):
    try:
        return response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
