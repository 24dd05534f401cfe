"""Load and fault test of `divqat serve` on 127.0.0.1 (a script: it runs a server process).

    OMP_NUM_THREADS=1 python benchmarks/load_serve.py --victim DIR [--defense dcp --defense-arg beta=0.5] \
        [--clients 8] [--batch 64] [--seconds 20] [--fault] [--json OUT.json]

DIR is a quantized `divqat train --out` directory. In one run, on the same defended model and
the same batch of random images:

1. direct: ONNX Runtime called in-process (:class:`divqat.serving.app.Predictor`, the server's
   own session settings), first one call at a time (latency), then from ``clients`` threads for
   ``seconds`` (throughput);
2. served: ``clients`` asyncio httpx clients (keep-alive) POST the batch to /v1/predict for
   ``seconds``, every request timed; three runs: JSON bodies with ``--sync full``, JSON with
   ``--sync normal``, raw float32 bodies (application/octet-stream) with ``--sync full``;
3. the server's work without HTTP, per request: decoding the body (JSON: json.loads and the
   input checks; raw float32: the same checks), the SQLite check-and-add (BEGIN IMMEDIATE) at
   both durabilities, the ONNX Runtime call, and the JSON encoding of the answer.

Reported: requests/s, rows/s, p50/p99 latency, and served/direct ratios. With ``--fault``:
three keys (one spent before the load, one under load with an unbounded budget, one whose budget
runs out under load), kill -9 of the server under load, restart, and the counts read back
against what the clients received: answered <= counted <= budget for every key; at both
durabilities.
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from divqat.serving.app import Predictor, decode_body
from divqat.serving.export_command import defended_model
from divqat.serving.keys import KeyStore
from divqat.serving.process import ServerProcess
from divqat.serving.protocol import BINARY

JSON = "application/json"


def _percentiles(latencies):
    ms = np.array(latencies) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def direct(predictor, x, clients, seconds):
    """ONNX Runtime in-process: one-at-a-time latencies, then ``clients`` threads' throughput."""
    latencies = []
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        predictor(x)
        latencies.append(time.perf_counter() - t0)
    calls = [0] * clients

    def worker(i, until):
        while time.perf_counter() < until:
            predictor(x)
            calls[i] += 1

    until = time.perf_counter() + seconds / 2
    threads = [threading.Thread(target=worker, args=(i, until)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p50, p99 = _percentiles(latencies)
    rps = sum(calls) / (seconds / 2)
    return {"p50_ms": p50, "p99_ms": p99, "requests_per_s": rps, "rows_per_s": rps * len(x)}


async def _load(url, token, body, clients, seconds, statuses=None, answered=None, content_type=JSON):
    """``clients`` keep-alive clients posting ``body`` until ``seconds`` pass (or the server dies)."""
    latencies = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        deadline = time.perf_counter() + seconds

        async def one_client():
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/predict", content=body)
                except httpx.HTTPError:
                    return  # the server died under this request: it was not answered
                if statuses is not None:
                    statuses.append(response.status_code)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    if answered is not None:
                        answered.append(len(response.json()["outputs"]))
                elif statuses is None:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def served(url, token, body, rows, clients, seconds, content_type=JSON):
    asyncio.run(_load(url, token, body, clients, 1.0, content_type=content_type))  # warm-up: connections, threads
    latencies = asyncio.run(_load(url, token, body, clients, seconds, content_type=content_type))
    p50, p99 = _percentiles(latencies)
    rps = len(latencies) / seconds
    return {"p50_ms": p50, "p99_ms": p99, "requests_per_s": rps, "rows_per_s": rps * rows}


def server_work(predictor, db, token, body, raw, shape, rounds=50):
    """Median milliseconds of each step the server does for one request, outside HTTP."""
    full, normal = KeyStore(db, synchronous="FULL"), KeyStore(db, synchronous="NORMAL")
    steps = {"decode_json_body": [], "decode_binary_body": [], "sqlite_charge_full": [], "sqlite_charge_normal": [],
             "onnx_runtime": [], "json_encode": []}
    for _ in range(rounds):
        t = [time.perf_counter()]
        x = decode_body(body, shape, 1 << 20)
        t.append(time.perf_counter())
        decode_body(raw, shape, 1 << 20, BINARY)
        t.append(time.perf_counter())
        full.charge(token, len(x))
        t.append(time.perf_counter())
        normal.charge(token, len(x))
        t.append(time.perf_counter())
        out = predictor(x)
        t.append(time.perf_counter())
        json.dumps({"outputs": out.tolist(), "queries_used": 0, "budget_left": 0})
        t.append(time.perf_counter())
        for key, start, end in zip(steps, t[:-1], t[1:]):
            steps[key].append(end - start)
    return {key: statistics.median(values) * 1e3 for key, values in steps.items()}


def fault(model_path, db, body, rows, clients, seconds, sync):
    """kill -9 under load, restart, and every key's count against what its clients received."""
    store = KeyStore(db)
    spent, busy = store.add(f"{sync}-spent", 10 * rows), store.add(f"{sync}-busy", 10**12)
    edge_budget = 50 * rows
    edge = store.add(f"{sync}-edge", edge_budget)
    answered = {"spent": [], "busy": [], "edge": []}
    with ServerProcess("--victim", model_path, "--db", db, "--sync", sync) as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {spent}"}) as client:
            for _ in range(11):  # ten answered, the eleventh refused: the key is spent
                response = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
                if response.status_code == 200:
                    answered["spent"].append(len(response.json()["outputs"]))

        async def both():
            await asyncio.gather(_load(server.url, busy, body, clients // 2 or 1, 3 * seconds, [], answered["busy"]),
                                 _load(server.url, edge, body, clients // 2 or 1, 3 * seconds, [], answered["edge"]))

        loader = threading.Thread(target=asyncio.run, args=(both(),))
        loader.start()
        time.sleep(seconds)
        server.kill()
        loader.join()
    with ServerProcess("--victim", model_path, "--db", db) as restarted:
        counted = {}
        for name, token in (("spent", spent), ("busy", busy), ("edge", edge)):
            usage = httpx.get(restarted.url + "/v1/usage", headers={"Authorization": f"Bearer {token}"}).json()
            counted[name] = usage["queries_used"]
    budgets = {"spent": 10 * rows, "busy": 10**12, "edge": edge_budget}
    result = {name: {"answered": sum(answered[name]), "counted": counted[name], "budget": budgets[name]}
              for name in budgets}
    for r in result.values():
        r["ok"] = r["answered"] <= r["counted"] <= r["budget"]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--defense")
    parser.add_argument("--defense-arg", action="append", default=[])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fault", action="store_true")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    model = defended_model(args.victim, args.defense, args.defense_arg)
    predictor = Predictor(model)
    shape = tuple(predictor.info["input_shape"])
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    body, raw = json.dumps({"inputs": x.tolist()}).encode(), x.astype("<f4").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        model_path, db = Path(tmp) / "model.onnx", Path(tmp) / "keys.db"
        model_path.write_bytes(model.SerializeToString())
        store = KeyStore(db, create=True)
        token = store.add("load", 10**12)
        report = {"victim": str(args.victim), "defense": args.defense, "defense_args": args.defense_arg,
                  "clients": args.clients, "batch": args.batch, "seconds": args.seconds, "body_bytes": len(body),
                  "load_average_before": os.getloadavg()}
        report["direct"] = d = direct(predictor, x, args.clients, args.seconds)
        runs = (("json_full", "full", body, JSON), ("json_normal", "normal", body, JSON),
                ("binary_full", "full", raw, BINARY))
        for name, sync, payload, content_type in runs:
            with ServerProcess("--victim", model_path, "--db", db, "--max-batch", args.batch, "--sync", sync) as server:
                report[f"served_{name}"] = s = served(server.url, token, payload, args.batch, args.clients,
                                                      args.seconds, content_type)
            report[f"ratios_{name}"] = {"p50_latency_served_over_direct": s["p50_ms"] / d["p50_ms"],
                                        "p99_latency_served_over_direct": s["p99_ms"] / d["p99_ms"],
                                        "rows_per_s_direct_over_served": d["rows_per_s"] / s["rows_per_s"]}
        report["server_work_ms"] = server_work(predictor, db, token, body, raw, shape)
        if args.fault:
            report["fault"] = {sync: fault(model_path, db, body, args.batch, args.clients, args.seconds / 2, sync)
                               for sync in ("full", "normal")}
        report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for keys in report.get("fault", {}).values() for r in keys.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
