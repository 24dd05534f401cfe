"""Load test of `divqat serve` on 127.0.0.1 against ONNX Runtime called directly (a script: it
runs server processes and, for the PostgreSQL store, a throwaway PostgreSQL server).

    OMP_NUM_THREADS=1 python benchmarks/load_serve.py --victim DIR [--defense dcp --defense-arg beta=0.5] \\
        [--clients 8] [--batches 1,64] [--seconds 5] [--stores sqlite,postgresql] [--processes 1,2] \\
        [--fault] [--json OUT.json]

DIR is a quantized `divqat train --out` directory. In one run, on the same defended model and
the same random images, for each batch size:

1. direct: ONNX Runtime in-process (:class:`divqat.serving.app.Predictor`, the server's own
   session settings): latency one call at a time for ``seconds``/2, then rows/s from
   ``clients`` threads for ``seconds``/2;
2. served, for each key store (SQLite with ``--sync full``; PostgreSQL, ``synchronous_commit=on``,
   on a cluster started for the run) and each number of server processes (``--workers``):
   ``clients`` asyncio httpx keep-alive clients POST for ``seconds`` (after a 1 s warm-up),
   three bodies: /v1 JSON, /v1 raw float32, /v2 binary tensor data extension;
3. the server's work per request outside HTTP (medians of 50): decoding each body, the charge
   in each store (wall time: it waits for a commit), the ONNX Runtime call and encoding the
   answer (thread CPU time, which the machine's other load does not inflate), and charges per
   second on each store from one thread and from ``clients`` threads.

Reported: rows/s, p50/p99 latency, served rows/s over direct rows/s, the CPU time a request cost
the server's processes and the load generator, the load average before and after. With ``--fault``: three keys (one spent before the load, one under load with an unbounded
budget, one whose budget runs out under load), kill -9 of the server under load, a restart,
and each key's count against what its clients received (answered <= counted <= budget), on
each store.
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
import orjson

from divqat.serving import v2
from divqat.serving.app import Predictor
from divqat.serving.export_command import defended_model
from divqat.serving.inputs import decode_body
from divqat.serving.key_stores import open_key_store
from divqat.serving.postgres_cluster import TemporaryPostgres
from divqat.serving.process import ServerProcess
from divqat.serving.protocol import BINARY, JSON

MODEL = "bench"
BODIES = ("v1_json", "v1_binary", "v2_binary")


def _percentiles(latencies):
    ms = np.array(latencies) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def requests_for(x):
    """(route, body, headers) of each body kind for the batch ``x``."""
    header = orjson.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    return {"v1_json": ("/v1/predict", orjson.dumps({"inputs": x.tolist()}), {"Content-Type": JSON}),
            "v1_binary": ("/v1/predict", x.astype("<f4").tobytes(), {"Content-Type": BINARY}),
            "v2_binary": (f"/v2/models/{MODEL}/infer", header + x.astype("<f4").tobytes(),
                          {"Content-Type": BINARY, v2.HEADER_LENGTH: str(len(header))})}


def direct(predictor, x, clients, seconds):
    """ONNX Runtime in-process: latencies one call at a time, then rows/s from ``clients`` threads."""
    latencies = []
    until = time.perf_counter() + seconds / 2
    while time.perf_counter() < until:
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
    return {"p50_ms": p50, "p99_ms": p99, "rows_per_s": sum(calls) * len(x) / (seconds / 2)}


async def _load(url, token, route, body, headers, clients, seconds, statuses=None, answered=None):
    """``clients`` keep-alive clients posting ``body`` until ``seconds`` pass (or the server dies)."""
    latencies = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}", **headers},
                                 limits=limits, timeout=120) as client:
        deadline = time.perf_counter() + seconds

        async def one_client():
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    response = await client.post(route, content=body)
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


def cpu_seconds(pid):
    """CPU seconds (user + system) used so far by process ``pid`` and its children (the workers)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(c) for c in children)


def served(server, token, request, rows, clients, seconds):
    """Rows/s and latencies of ``clients`` clients posting ``request``, and the CPU milliseconds a
    request cost the server (its processes) and the load generator (this process)."""
    route, body, headers = request
    asyncio.run(_load(server.url, token, route, body, headers, clients, 1.0))  # warm-up: connections, threads
    server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
    latencies = asyncio.run(_load(server.url, token, route, body, headers, clients, seconds))
    server_cpu, client_cpu = cpu_seconds(server.process.pid) - server_cpu, time.process_time() - client_cpu
    p50, p99 = _percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "rows_per_s": len(latencies) * rows / seconds,
            "server_cpu_ms_per_request": 1e3 * server_cpu / len(latencies),
            "client_cpu_ms_per_request": 1e3 * client_cpu / len(latencies)}


def _median_ms(step, rounds, clock):
    times = []
    for _ in range(rounds):
        t0 = clock()
        step()
        times.append(clock() - t0)
    return statistics.median(times) * 1e3


def server_work(predictor, stores, x, rounds=50):
    """Median milliseconds of each step of one request outside HTTP (see the module docstring)."""
    shape, cpu = tuple(x.shape[1:]), time.thread_time
    requests = requests_for(x)
    steps = {
        "decode /v1 JSON": (lambda: decode_body(requests["v1_json"][1], shape, len(x)), cpu),
        "decode /v1 float32": (lambda: decode_body(requests["v1_binary"][1], shape, len(x), BINARY), cpu),
        "decode /v2 binary": (lambda: v2.decode_infer_request(requests["v2_binary"][1], requests["v2_binary"][2],
                                                              "input", "answers", shape, len(x)), cpu),
        "ONNX Runtime": (lambda: predictor(x), cpu),
    }
    answers = predictor(x)
    steps["encode /v1 JSON answer"] = (lambda: orjson.dumps({"outputs": answers}, option=orjson.OPT_SERIALIZE_NUMPY),
                                       cpu)
    steps["encode /v2 binary answer"] = (lambda: v2.encode_infer_response(MODEL, "answers", answers, True, None), cpu)
    for name, (store, token) in stores.items():
        steps[f"charge, {name} (wall)"] = (lambda store=store, token=token: store.charge(token, len(x)),
                                           time.perf_counter)
    return {name: _median_ms(step, rounds, clock) for name, (step, clock) in steps.items()}


def charge_rate(store, token, threads, seconds=2.0):
    """Charges of one row per second from ``threads`` threads on one key: how far concurrent
    charges share commits (SQLite's group commit, PostgreSQL's shared WAL flushes)."""
    counts = [0] * threads

    def worker(i, until):
        while time.perf_counter() < until:
            store.charge(token, 1)
            counts[i] += 1

    until = time.perf_counter() + seconds
    pool = [threading.Thread(target=worker, args=(i, until)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / seconds


def fault(model_path, db, body, rows, clients, seconds):
    """kill -9 under load, restart, and every key's count against what its clients received."""
    store = open_key_store(db)
    spent, busy = store.add("fault-spent", 10 * rows), store.add("fault-busy", 10**12)
    edge_budget = 50 * rows
    edge = store.add("fault-edge", edge_budget)
    answered = {"spent": [], "busy": [], "edge": []}
    headers = {"Content-Type": JSON}
    with ServerProcess("--victim", model_path, "--db", db) as server:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {spent}", **headers}) as client:
            for _ in range(11):  # ten answered, the eleventh refused: the key is spent
                response = client.post("/v1/predict", content=body)
                if response.status_code == 200:
                    answered["spent"].append(len(response.json()["outputs"]))

        async def both():
            half = clients // 2 or 1
            await asyncio.gather(
                _load(server.url, busy, "/v1/predict", body, headers, half, 3 * seconds, [], answered["busy"]),
                _load(server.url, edge, "/v1/predict", body, headers, half, 3 * seconds, [], answered["edge"]))

        loader = threading.Thread(target=asyncio.run, args=(both(),))
        loader.start()
        time.sleep(seconds)
        server.kill()
        loader.join()
    counted = {"spent": store.usage(spent).used, "busy": store.usage(busy).used, "edge": store.usage(edge).used}
    store.close()
    budgets = {"spent": 10 * rows, "busy": 10**12, "edge": edge_budget}
    result = {name: {"answered": sum(answered[name]), "counted": counted[name], "budget": budgets[name]}
              for name in budgets}
    for r in result.values():
        r["ok"] = r["answered"] <= r["counted"] <= r["budget"]
    return result


def table(report):
    """The served runs as a Markdown table."""
    lines = ["| batch | path | store | processes | rows/s | p50 | p99 | served ÷ direct rows/s "
             "| server CPU / request | client CPU / request |", "|---|---|---|---|---|---|---|---|---|---|"]
    for batch, d in report["direct"].items():
        lines.append(f"| {batch} | ONNX Runtime, direct | - | - | {d['rows_per_s']:,.0f} | {d['p50_ms']:.2f} ms | "
                     f"{d['p99_ms']:.1f} ms | 1 | | |")
        for r in (r for r in report["served"] if str(r["batch"]) == str(batch)):
            lines.append(f"| {batch} | {r['body']} | {r['store']} | {r['processes']} | {r['rows_per_s']:,.0f} | "
                         f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['served_over_direct']:.2f} | "
                         f"{r['server_cpu_ms_per_request']:.2f} ms | {r['client_cpu_ms_per_request']:.2f} ms |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", required=True)
    parser.add_argument("--defense")
    parser.add_argument("--defense-arg", action="append", default=[])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--fault", action="store_true")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    kinds, processes = args.stores.split(","), [int(p) for p in args.processes.split(",")]
    model = defended_model(args.victim, args.defense, args.defense_arg)
    predictor = Predictor(model)
    shape = tuple(predictor.info["input_shape"])
    rng = np.random.default_rng(0)
    inputs = {b: rng.random((b, *shape), dtype=np.float32) for b in batches}
    report = {"victim": str(args.victim), "defense": args.defense, "defense_args": args.defense_arg,
              "clients": args.clients, "seconds": args.seconds, "load_average_before": os.getloadavg(),
              "direct": {b: direct(predictor, inputs[b], args.clients, args.seconds) for b in batches},
              "served": []}
    postgres = TemporaryPostgres() if "postgresql" in kinds else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model_path = Path(tmp) / "model.onnx"
            model_path.write_bytes(model.SerializeToString())
            dbs = {kind: str(Path(tmp) / "keys.db") if kind == "sqlite" else postgres.create_database("bench")
                   for kind in kinds}
            stores = {kind: open_key_store(db, create=True) for kind, db in dbs.items()}
            tokens = {kind: store.add("load", 10**15) for kind, store in stores.items()}
            for kind, db in dbs.items():
                for n in processes:
                    with ServerProcess("--victim", model_path, "--db", db, "--max-batch", max(batches),
                                       "--workers", n, "--model-name", MODEL) as server:
                        for batch in batches:
                            for body, request in requests_for(inputs[batch]).items():
                                result = served(server, tokens[kind], request, batch, args.clients, args.seconds)
                                result.update(batch=batch, body=body, store=kind, processes=n,
                                              served_over_direct=result["rows_per_s"]
                                              / report["direct"][batch]["rows_per_s"])
                                report["served"].append(result)
                                print(json.dumps(result), flush=True)
            report["charges_per_s"] = {kind: {n: charge_rate(stores[kind], tokens[kind], n) for n in (1, args.clients)}
                                       for kind in kinds}
            report["server_work_ms"] = {
                b: server_work(predictor, {k: (stores[k], tokens[k]) for k in kinds}, inputs[b]) for b in batches}
            if args.fault:
                body = requests_for(inputs[max(batches)])["v1_json"][1]
                report["fault"] = {kind: fault(model_path, db, body, max(batches), args.clients, args.seconds)
                                   for kind, db in dbs.items()}
            for store in stores.values():
                store.close()
    finally:
        if postgres is not None:
            postgres.stop()
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2, default=str))
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r["ok"] for keys in report.get("fault", {}).values() for r in keys.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
