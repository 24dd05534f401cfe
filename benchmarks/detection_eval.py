"""The extraction monitors of `divqat serve` against every attack of the library and honest clients.

    OMP_NUM_THREADS=1 python benchmarks/detection_eval.py --work DIR --out docs/results/data/detection/detection.csv \
        [--seeds 2] [--budget 5000] [--honest-queries 2000] [--shares 0,0.5,0.75,0.9] [--surrogate-epochs 3]
    python benchmarks/detection_eval.py --table docs/results/data/detection/detection.csv

Victims (built once in DIR): LeNet-5 on MNIST and on Fashion-MNIST, trained 3 epochs on the
first 10,000 training images, QAT 1 epoch, exported int8 (no output defense) and calibrated on
training images 10,000 to 15,000 (`divqat detect calibrate`). Each pair (victim <- the
attacker's queries: MNIST <- Fashion-MNIST, Fashion-MNIST <- MNIST) gets one real server with
``--monitors prada,ood,classes --on-alarm log --max-batch 64`` and a fresh key per client, so each key's
alarms give every monitor's detection delay on the same stream.

Clients, per pair and seed:
- attacks, ``--budget`` queries: knockoff, knockoff-adaptive, copycat, jbda (query set: the
  other dataset's training split), dfme, maze (data-free), through the attacks' own code
  (:func:`divqat.attacks.registry.run_attack`) on an HttpBlackBox that records every request;
- the adaptive thief (delays only): knockoff whose query set mixes a share of in-distribution images (the
  victim's test images 5,000 on) into the other dataset, for each of ``--shares``;
- honest, ``--honest-queries`` each: test images 2,000 on in random order; only two classes;
  blurred (3x3 box); noisy (Gaussian, sigma 0.1); shifted (up to 2 pixels); a burst of
  duplicates (each image 5 times in a row).

Per attack and monitor, from the recorded requests: the answers before the alarm's request
(``answered``); and the agreement, on the victim's test images 0 to 2,000, of a fresh LeNet-5
trained ``--surrogate-epochs`` on the answered pairs (a uniform retrained thief, the same for
every attack, including the data-free ones): with every answer (``log``), with those before
the alarm (``block``), and with the answers from the alarm's request on replaced by one-hot
labels (``labels``: exact for the query-set attacks, whose queries do not depend on answers,
approximate for the others, which would have adapted to labels). One CSV row per client, pair,
seed and monitor.
"""
import argparse
import csv
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from divqat.attacks.registry import run_attack
from divqat.attacks.surrogate import TrainConfig, train_surrogate
from divqat.checks import check_output_file
from divqat.cli import main
from divqat.data import load_tensors
from divqat.detection.registry import MONITORS
from divqat.models import build_model_for
from divqat.results import detection_tables
from divqat.serving.http_blackbox import HttpBlackBox
from divqat.serving.key_stores import open_key_store
from divqat.serving.process import ServerProcess
from divqat.utils import atomic_write_text

PAIRS = (("mnist", "fashion-mnist"), ("fashion-mnist", "mnist"))
ATTACKS = {"knockoff": {"epochs": 1}, "knockoff-adaptive": {"epochs": 1}, "copycat": {"epochs": 1},
           "jbda": {"epochs": 1, "round_epochs": 1}, "dfme": {}, "maze": {}}
HONEST = ("random", "two-classes", "blurred", "noisy", "shifted", "duplicates")
TRAIN_LIMIT, CALIBRATION_IMAGES, SCORED, MIX_FROM = 10_000, 5_000, 2_000, 5_000
MAX_BATCH = 64  # the server's --max-batch: a thief's queries reach it as requests of at most 64 rows
FIELDS = ("kind", "client", "share", "pair", "seed", "monitor", "queries", "alarm_query", "answered",
          "agreement_log", "agreement_block", "agreement_labels")


class RecordingBlackBox(HttpBlackBox):
    """An HttpBlackBox that keeps every request's rows and answers, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = []

    def _predict(self, batch):
        answers = super()._predict(batch)
        self.requests.append((batch.clone(), answers.clone()))
        return answers


def build_victim(work, dataset):
    """The exported, calibrated LeNet-5 of ``dataset`` in ``work`` (trained once)."""
    model = work / f"{dataset}.onnx"
    if model.is_file():
        return model
    common = ["--dataset", dataset, "--arch", "lenet5", "--limit", str(TRAIN_LIMIT), "--no-progress", "--device", "cpu"]
    fp, qat = work / f"{dataset}-fp", work / f"{dataset}-qat"
    for argv in (["train", *common, "--method", "fp", "--epochs", "3", "--out", str(fp), "--overwrite"],
                 ["train", *common, "--method", "qat", "--teacher", str(fp), "--epochs", "1", "--out", str(qat),
                  "--overwrite"],
                 ["export", "--victim", str(qat), "--out", str(model)],
                 ["detect", "calibrate", "--model", str(model), "--dataset", dataset, "--split", "train",
                  "--offset", str(TRAIN_LIMIT), "--images", str(CALIBRATION_IMAGES)]):
        if main(argv) != 0:
            raise RuntimeError(f"divqat {' '.join(argv)} failed")
    return model


def honest_stream(kind, images, labels, n, rng):
    """``n`` honest queries of ``kind`` (see the module docstring) from in-distribution ``images``."""
    if kind == "two-classes":
        keep = np.isin(labels, rng.choice(10, 2, replace=False))
        images = images[keep]
    if kind == "duplicates":
        return np.repeat(images[rng.choice(len(images), math.ceil(n / 5), replace=False)], 5, axis=0)[:n]
    x = images[rng.choice(len(images), n, replace=n > len(images))]
    if kind == "blurred":
        x = F.avg_pool2d(torch.from_numpy(x), 3, stride=1, padding=1, count_include_pad=False).numpy()
    elif kind == "noisy":
        x = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    elif kind == "shifted":
        x = np.stack([np.roll(img, tuple(rng.integers(-2, 3, 2)), axis=(1, 2)) for img in x])
    return np.ascontiguousarray(x, np.float32)


def alarm_queries(store, key):
    """{monitor: the query of key ``key`` (its name) that raised the monitor's alarm}."""
    key_id = next(k["id"] for k in store.list() if k["name"] == key)
    return {a["monitor"]: int(re.match(r"query (\d+):", a["detail"]).group(1)) for a in store.alarms(key_id)}


def agreement(requests, stop, labels_from, dataset, scored_x, victim_labels, epochs, seed):
    """Agreement with the victim of a LeNet-5 trained on the rows of ``requests[:stop]``, answers
    from request ``labels_from`` on made one-hot; None if there is nothing to train on."""
    rows = [(x, F.one_hot(a.argmax(1), a.shape[1]).float() if i >= labels_from else a)
            for i, (x, a) in enumerate(requests[:stop])]
    if sum(len(x) for x, _ in rows) < 2:
        return None
    torch.manual_seed(seed)
    model = build_model_for("lenet5", dataset)
    config = TrainConfig(epochs=epochs, lr=0.01, momentum=0.9, lr_step=10_000)
    train_surrogate(model, torch.cat([x for x, _ in rows]), torch.cat([a for _, a in rows]), config, progress=False)
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(scored_x[i:i + 500]).argmax(1) for i in range(0, len(scored_x), 500)])
    return float((predicted == victim_labels).double().mean())


def request_of(requests, query):
    """Index of the request holding the key's ``query``-th row (1-based)."""
    ends = np.cumsum([len(x) for x, _ in requests])
    return int(np.searchsorted(ends, query))


def attack_rows(name, share, store, key, box, pair, seed, scoring, epochs):
    """The rows of one thief; the adaptive thief's (``share`` given) without agreements."""
    dataset = pair[0]
    alarms, requests = alarm_queries(store, key), box.requests
    full = None if share is not None else agreement(requests, len(requests), len(requests), dataset, *scoring,
                                                     epochs, seed)
    rows, cache = [], {}
    for monitor in MONITORS:
        q = alarms.get(monitor)
        r = len(requests) if q is None else request_of(requests, q)
        if share is not None:
            cache[r, "block"] = cache[r, "labels"] = None
        elif (r, "block") not in cache:
            cache[r, "block"] = agreement(requests, r, r, dataset, *scoring, epochs, seed) if r < len(requests) \
                else full
            cache[r, "labels"] = agreement(requests, len(requests), r, dataset, *scoring, epochs, seed) \
                if r < len(requests) and name != "copycat" else full
        rows.append({"kind": "mixed" if share is not None else "attack", "client": name, "share": share or 0,
                     "pair": f"{pair[0]}<-{pair[1]}", "seed": seed, "monitor": monitor, "queries": box.queries_used,
                     "alarm_query": q, "answered": sum(len(x) for x, _ in requests[:r]), "agreement_log": full,
                     "agreement_block": cache[r, "block"], "agreement_labels": cache[r, "labels"]})
    return rows


def run_pair(pair, seed, args, store, server, rows, log):
    dataset, other = pair
    test_x, test_y = load_tensors(dataset, "test")
    session = ort.InferenceSession(str(args.work / f"{dataset}.onnx"), providers=["CPUExecutionProvider"])
    scored_x = test_x[:SCORED]
    victim_labels = torch.from_numpy(session.run(None, {"input": scored_x.numpy()})[0].argmax(1))
    scoring = (scored_x, victim_labels)
    label = f"{dataset}<-{other}"
    for name, options in ATTACKS.items():
        key = f"{name}-{dataset}.{other}-{seed}"
        box = RecordingBlackBox(server.url, store.add(key, args.budget))
        queryset = None if name in ("dfme", "maze") else other
        start = time.time()
        run_attack(box, name, args.budget, seed=seed, queryset=queryset, options=dict(options), progress=False)
        rows += attack_rows(name, None, store, key, box, pair, seed, scoring, args.surrogate_epochs)
        log(f"{label} seed {seed} {name}: {alarm_queries(store, key)} ({time.time() - start:.0f} s)")
        box.close()
    other_x = load_tensors(other, "train")[0]
    mix_x = test_x[MIX_FROM:]
    for share in args.shares:
        key = f"mix{share}-{dataset}.{other}-{seed}"
        gen = torch.Generator().manual_seed(seed)
        n_in = round(share * args.budget)
        x = torch.cat([mix_x[torch.randperm(len(mix_x), generator=gen)[:n_in]],
                       other_x[torch.randperm(len(other_x), generator=gen)[:args.budget - n_in]]])
        box = RecordingBlackBox(server.url, store.add(key, args.budget))
        run_attack(box, "knockoff", args.budget, seed=seed, queryset=x, options={"epochs": 1}, progress=False)
        rows += attack_rows("knockoff", share, store, key, box, pair, seed, scoring, args.surrogate_epochs)
        log(f"{label} seed {seed} knockoff share {share}: {alarm_queries(store, key)}")
        box.close()
    rng = np.random.default_rng(seed)
    honest_x, honest_y = test_x[SCORED:].numpy(), test_y[SCORED:].numpy()
    for kind in HONEST:
        key = f"honest-{kind}-{dataset}.{other}-{seed}"
        box = HttpBlackBox(server.url, store.add(key, args.honest_queries))
        stream = torch.from_numpy(honest_stream(kind, honest_x, honest_y, args.honest_queries, rng))
        for i in range(0, len(stream), 64):
            box.query(stream[i:i + 64])
        alarms = alarm_queries(store, key)
        rows += [{"kind": "honest", "client": kind, "share": 0, "pair": label, "seed": seed, "monitor": m,
                  "queries": box.queries_used, "alarm_query": alarms.get(m), "answered": box.queries_used}
                 for m in MONITORS]
        log(f"{label} seed {seed} honest {kind}: {alarms}")
        box.close()


def evaluate(args):
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.time()

    def log(text):
        print(f"[{time.time() - start:6.0f} s] {text}", flush=True)

    for dataset, _ in PAIRS:
        build_victim(args.work, dataset)
        log(f"victim {dataset} ready")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in PAIRS:
            store = open_key_store(Path(tmp) / f"{pair[0]}.db", create=True)
            with ServerProcess("--victim", args.work / f"{pair[0]}.onnx", "--db", store.path, "--max-batch", MAX_BATCH,
                               "--monitors", ",".join(MONITORS), "--on-alarm", "log", "--sync", "normal",
                               env={"OMP_NUM_THREADS": "1"}) as server:
                for seed in range(args.seeds):
                    run_pair(pair, seed, args, store, server, rows, log)
    text = ",".join(FIELDS) + "\n" + "".join(
        ",".join("" if row.get(f) is None else (f"{row[f]:.4f}" if isinstance(row[f], float) else str(row[f]))
                 for f in FIELDS) + "\n" for row in rows)
    atomic_write_text(text, args.out)
    log(f"{len(rows)} rows -> {args.out}")


def plot(path, png):
    """Detection delays of a detection CSV as a figure at ``png``: per pair, the median delay of
    each monitor against each attack (top) and against the adaptive thief over its in-distribution
    share (bottom); a monitor that flagged fewer than half the seeds is drawn hollow at the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from divqat.results.words import DATASETS
    from divqat.utils import atomic_write

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    fig, axes = plt.subplots(2, len(pairs), figsize=(6 * len(pairs), 8), squeeze=False)
    for col, pair in enumerate(pairs):
        victim, queries = (DATASETS.get(d, d) for d in pair.split("<-"))
        for row_i, (kind, x_of) in enumerate((("attack", lambda r: r["client"]), ("mixed", lambda r: float(r["share"])))):
            ax = axes[row_i][col]
            xs = list(dict.fromkeys(x_of(r) for r in rows if r["pair"] == pair and r["kind"] == kind))
            for i, monitor in enumerate(MONITORS):
                g = [r for r in rows if (r["pair"], r["kind"], r["monitor"]) == (pair, kind, monitor)]
                for j, x in enumerate(xs):
                    seeds = [r for r in g if x_of(r) == x]
                    delays = [int(r["alarm_query"]) for r in seeds if r["alarm_query"]]
                    flagged = len(delays) * 2 >= len(seeds) > 0
                    y = statistics.median(delays) if flagged else int(seeds[0]["queries"])
                    pos = j + (i - 1) * 0.2 if kind == "attack" else x + (i - 1) * 0.015  # side by side
                    ax.plot(pos, y, "o", color=f"C{i}", mfc=f"C{i}" if flagged else "none",
                            label=monitor if j == 0 else None)
            if kind == "attack":
                ax.set_xticks(range(len(xs)), xs, rotation=30)
                ax.set_title(f"{victim} victim queried with {queries} images: each attack")
            else:
                ax.set_xlabel("share of the thief's queries that are the victim's own test images")
                ax.set_title(f"{victim} victim: a thief mixing in in-distribution images")
            ax.set_yscale("log")
            ax.set_ylabel("queries until the alarm (median over seeds)")
            ax.legend(title="monitor (hollow: not flagged)", fontsize=8)
    fig.suptitle("Per-key monitors of divqat serve: how soon each flags a thief (lower is better for the defender)")
    fig.tight_layout()
    atomic_write(png, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def main_cli(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="where the victims are built (reused)")
    parser.add_argument("--out", type=Path, help="the per-seed CSV (a detection*.csv)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--honest-queries", type=int, default=2000)
    parser.add_argument("--shares", default="0,0.5,0.75,0.9")
    parser.add_argument("--surrogate-epochs", type=int, default=3)
    parser.add_argument("--overwrite", action="store_true", help="replace an --out CSV that holds results")
    parser.add_argument("--table", type=Path, metavar="CSV", help="print the Markdown tables of a CSV and exit")
    parser.add_argument("--plot", type=Path, nargs=2, metavar=("CSV", "PNG"), help="draw the delays of a CSV and exit")
    args = parser.parse_args(argv)
    if args.table:
        rows = detection_tables.read_detection_csv(args.table)
        print("\n\n".join(detection_tables.table(rows, part) for part in detection_tables.PARTS))
        return 0
    if args.plot:
        plot(*args.plot)
        return 0
    if args.work is None or args.out is None or not args.out.name.startswith("detection"):
        parser.error("--work and --out (a detection*.csv) are required")
    if args.out.exists() and not args.overwrite:  # checked before an hour of work, not after
        parser.error(f"--out {args.out} holds results; give --overwrite to replace them")
    try:
        check_output_file("--out", args.out)
    except ValueError as exc:
        parser.error(str(exc))
    args.shares = [float(s) for s in args.shares.split(",") if s]
    torch.set_num_threads(1)
    evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
