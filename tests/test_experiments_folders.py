"""Victim folders of an experiment carry a readable name beside the key, and caches written with
bare-key folders (before the names) are still found: nothing is trained again."""
import re

from test_experiments_runner import FakePipeline

from divqat.experiments.cells import CellCache, victim_cells, victim_name
from divqat.experiments.config import parse_config
from divqat.experiments.runner import run_experiment

RAW = {"name": "folders", "seeds": [0, 3], "data": {"victim": "digits", "queryset": "digits"},
       "victim": {"arch": "lenet5", "epochs": 1}, "quant": {"epochs": 1},
       "methods": [{"name": "qat"}, {"name": "divqat", "alpha": [0.5, 2.0]}],
       "defenses": [{"name": "none"}], "attacks": [{"name": "knockoff", "budget": 100}]}


def _folders(out):
    return sorted(p.name for p in (out / "victims").iterdir())


def test_victim_folders_are_named_method_seed_key(tmp_path):
    config = parse_config(RAW)
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    expected = sorted(f"{name}-seed{seed}-{cell.key}" for seed in (0, 3) for cell, name in zip(
        victim_cells(config, seed), ("fp", "qat", "divqat-alpha-0.5", "divqat-alpha-2.0")))
    assert _folders(out) == expected
    for folder in expected:
        assert re.fullmatch(r"[a-z0-9.-]+-seed\d-[0-9a-f]{16}", folder)
        assert (out / "victims" / folder / "victim.json").is_file()


def test_a_cache_with_bare_key_folders_is_still_found(tmp_path):
    config = parse_config(RAW)
    out = tmp_path / "run"
    run_experiment(config, out, pipeline=FakePipeline(), progress=False, report=False)
    for path in (out / "victims").iterdir():  # the layout of caches written before readable names
        path.rename(path.parent / path.name.rsplit("-", 1)[1])
    bare = _folders(out)
    raw = dict(RAW, attacks=[{"name": "knockoff", "budget": [100, 200]}])  # new cells on old victims
    again = FakePipeline()
    counts = run_experiment(parse_config(raw), out, pipeline=again, progress=False, report=False)
    assert counts == {"victims_trained": 0, "cells_run": 6, "cells_cached": 6}
    assert again.trained == [] and len(again.loaded) == 6  # loaded from the bare folders, not retrained
    assert _folders(out) == bare  # no second folder for a cached victim


def test_victim_name_and_lookup_by_key(tmp_path):
    config = parse_config(RAW)
    fp, qat, divqat_small, _ = victim_cells(config, 3)
    assert [victim_name(c) for c in (fp, qat, divqat_small)] == ["fp-seed3", "qat-seed3", "divqat-alpha-0.5-seed3"]
    cache = CellCache(tmp_path)
    assert cache.victim_record(qat.key) is None
    folder = cache.victim_dir(qat.key, victim_name(qat))
    assert folder.name == f"qat-seed3-{qat.key}"
    assert cache.victim_dir(qat.key) == folder  # found by key alone
    cache.save_victim_record(qat.key, {"key": qat.key})
    # records are stamped with their config key and code (cells.py), and read back one per config key
    assert cache.victim_record(qat.key)["key"] == qat.key and [r["key"] for r in cache.victim_records()] == [qat.key]
