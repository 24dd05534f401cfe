"""The cell cache knows the code: a code fingerprint in every key, stale cells recomputed unless
reused knowingly (`--reuse-stale`), and marked in the tables; seeds pair the compared cells."""
import csv
import json

import pytest
from test_experiments_runner import CONFIG, FakePipeline

from divqat.experiments import cells, command, fingerprint
from divqat.experiments.config import load_experiment_config
from divqat.experiments.runner import run_experiment
from divqat.results.aggregate import collect


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "fake.toml"
    path.write_text(CONFIG)
    return load_experiment_config(path)


def _code(monkeypatch, value):
    monkeypatch.setattr(cells, "current_code", lambda: value)


def test_source_hash_changes_with_any_source_byte(tmp_path):
    pkg = tmp_path / "divqat"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "csrc").mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "csrc" / "k.cpp").write_text("int k;\n")
    (pkg / "notes.txt").write_text("not a source")
    first = fingerprint.source_hash(pkg)
    assert [p.name for _, p in fingerprint.source_files(pkg)] == ["k.cpp", "a.py", "b.py"]
    (pkg / "notes.txt").write_text("still not a source")
    assert fingerprint.source_hash(pkg) == first
    (tmp_path / "csrc" / "k.cpp").write_text("int k2;\n")
    second = fingerprint.source_hash(pkg)
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert len({first, second, fingerprint.source_hash(pkg)}) == 3


def test_running_fingerprint_names_version_and_sources():
    import divqat

    fp = fingerprint.code_fingerprint()
    assert fp == f"{divqat.__version__}+{fingerprint.source_hash()}"


def test_changed_code_recomputes_every_cell(config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _code(monkeypatch, "v1")
    first = run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    assert first["cells_run"] == 60
    _code(monkeypatch, "v1")
    assert run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)["cells_run"] == 0
    _code(monkeypatch, "v2")
    fake = FakePipeline()
    counts = run_experiment(config, out, pipeline=fake, progress=False, report=False)
    assert counts == {"victims_trained": 12, "cells_run": 60, "cells_cached": 0}
    tables = collect(out)  # one row per cell: the running code's (the v1 records stay on disk), none stale
    assert len(tables["cells"]) == 60 and len(tables["victims"]) == 12
    assert {r["code"] for r in tables["cells"]} == {"v2"} and not any(r["stale"] for r in tables["cells"])


def test_reuse_stale_keeps_old_cells_and_marks_them(config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _code(monkeypatch, "v1")
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    _code(monkeypatch, "v2")
    config.seeds = [0]  # the stale seed-0 cells are adopted, a new seed 2 is computed by v2
    adopted = cells.CellCache(out).adopt_stale(cells.grid_cells(config))
    assert adopted == 6 + 30
    config.seeds = [0, 2]
    fake = FakePipeline()
    counts = run_experiment(config, out, pipeline=fake, progress=False)
    assert counts == {"victims_trained": 6, "cells_run": 30, "cells_cached": 30}
    tables = collect(out)
    by_seed = {}
    for row in tables["cells"]:
        by_seed.setdefault(row["seed"], set()).add((row["code"], row["stale"]))
    # seed 1 was not part of the v2 run: its v1 cells are shown with their code, not as reused
    assert by_seed == {0: {("v1", True)}, 1: {("v1", False)}, 2: {("v2", False)}}
    with open(out / "results.csv") as f:
        assert {r["stale"] for r in csv.DictReader(f) if r["seed"] == "0"} == {"True"}
    assert "**36 of 108 cells are stale**" in (out / "report.md").read_text()


def test_experiment_command_reuse_stale_flag_and_seed_subset(config, tmp_path, monkeypatch, capsys):
    import argparse

    out = tmp_path / "run"
    _code(monkeypatch, "v1")
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    _code(monkeypatch, "v2")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    monkeypatch.setattr(command, "run_experiment", lambda cfg, out, **kw: run_experiment(
        cfg, out, pipeline=FakePipeline(), **kw))
    args = parser.parse_args([str(tmp_path / "fake.toml"), "--out", str(out), "--reuse-stale", "--quiet",
                              "--no-report", "--seeds", "1"])
    assert command.run(args) == 0
    assert "reusing 36 stale cells" in capsys.readouterr().out
    assert command.parse_seeds("0-2,5", list(range(10))) == [0, 1, 2, 5]
    with pytest.raises(ValueError, match="--seeds"):
        command.parse_seeds("3", [0, 1])
    with pytest.raises(ValueError, match="--seeds"):
        command.parse_seeds("a-b", [0, 1])


def test_one_seed_pairs_teacher_query_sample_and_surrogate_start(config):
    """Compared victims of one seed share the full-precision teacher (same cell), are trained
    with that seed, and their attack cells carry it (the attacks seed the query order and the
    surrogate initialisation from it)."""
    victims = cells.victim_cells(config, 3)
    fp, quantized = victims[0], victims[1:]
    assert {v.teacher.key for v in quantized} == {fp.key}
    assert {v.spec["teacher"] for v in quantized} == {fp.config_key}
    assert {v.seed for v in victims} == {3} and {v.spec["seed"] for v in victims} == {3}
    for v in quantized:
        assert {c.spec["seed"] for c in cells.attack_cells(config, v)} == {3}
    other = cells.victim_cells(config, 4)[0]
    assert other.key != fp.key
    # the spec of a victim differs from its paired baseline's only in the method
    qat, div = quantized[0].spec, quantized[1].spec
    assert {k for k in qat if qat[k] != div[k]} == {"method"}
    json.dumps(qat)


def test_victims_csv_rows_lead_with_the_victim_table_columns():
    from divqat.results.aggregate import victim_rows
    from divqat.results.tables import to_csv

    metrics = {"test_accuracy": 0.96, "int8_test_accuracy": 0.955, "teacher_test_accuracy": 0.97,
               "int8_agreement": 0.999, "kl_fp_q": 0.05, "l1_fp_q": 0.08}
    records = [{"key": "k1", "seed": 4, "label": "divqat(alpha=1.0)", "method": {"name": "divqat", "alpha": 1.0},
                "metrics": metrics, "code": "v1", "stale": False},
               {"key": "k0", "seed": 4, "label": "fp", "method": {"name": "fp"}, "metrics": {"test_accuracy": 0.97}}]
    rows, _ = victim_rows(records)
    div, fp = rows
    assert (div["method"], div["alpha"], div["T"], div["direction"], div["seed"]) == ("divqat", 1.0, 1.0, "forward", 4)
    assert (div["fp_accuracy"], div["int8_accuracy"], div["int8_agreement"], div["kl_fp_q"], div["l1_fp_q"]) == (
        0.97, 0.955, 0.999, 0.05, 0.08)
    assert (fp["fp_accuracy"], fp["int8_accuracy"], fp["T"]) == (0.97, None, None)
    header = to_csv(rows).splitlines()[0].split(",")
    for column in ("method", "alpha", "T", "direction", "seed", "fp_accuracy", "int8_accuracy", "int8_agreement",
                   "kl_fp_q", "l1_fp_q", "code", "stale"):
        assert column in header
