"""Experiment files with dataset pairs ([[pairs]]): one config per pair, everything else shared,
each named for its pair; their errors; `divqat experiment --pair` and `frontier run --pair`,
and each pair into its own directory without it; each pair written as a file of its own
(`python -m divqat.experiments.pair_files`, what the drivers run with older code)."""
import json
import tomllib
from pathlib import Path

import pytest
from test_cli_errors import _fails

from divqat.cli import main
from divqat.experiments import frontier, pair_files, runner
from divqat.experiments.cells import grid_cells
from divqat.experiments.config import load_experiment_config, load_experiment_configs, parse_config, parse_configs
from divqat.experiments.pairs import pair_toml

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [{"name": "a", "victim": "digits", "queryset": "digits"}, {"name": "b", "victim": "mnist"}]
RAW = {
    "name": "grid_{pair}", "seeds": [0, 1],
    "pairs": PAIRS,
    "data": {"train_limit": 64, "test_limit": 32},
    "victim": {"arch": "smallcnn", "epochs": 1, "batch_size": 32},
    "methods": [{"name": "fp"}],
}
# a grid without attacks: one fp victim per pair and seed, seconds to train on digits
TOML = """name = "tiny_{pair}"
seeds = [0]

[[pairs]]
name = "left"
victim = "digits"

[[pairs]]
name = "right"
victim = "digits"
queryset = "digits"

[data]
train_limit = 64
test_limit = 32

[victim]
arch = "smallcnn"
epochs = 1
batch_size = 32

[[methods]]
name = "fp"
"""


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TOML)
    return path


def test_one_config_per_pair_named_for_it():
    a, b = parse_configs(RAW)
    assert (a.pair, a.name, b.pair, b.name) == ("a", "grid_a", "b", "grid_b")
    assert a.data == {"victim": "digits", "queryset": "digits", "train_limit": 64, "test_limit": 32}
    assert b.data == {"victim": "mnist", "train_limit": 64, "test_limit": 32}
    assert a.methods == b.methods and a.seeds == b.seeds == [0, 1]
    # each pair's record (configs/<name>.json) is the config a file of its own would hold
    assert a.raw == {**{k: v for k, v in RAW.items() if k != "pairs"}, "name": "grid_a", "data": a.data}
    assert [p.name for p in parse_configs({**RAW, "name": "grid"})] == ["grid_a", "grid_b"]
    assert [p.name for p in parse_configs({k: v for k, v in RAW.items() if k != "name"}, "file")] == [
        "file_a", "file_b"]
    assert [(c.pair, c.name) for c in parse_configs(a.raw)] == [(None, "grid_a")]


def test_a_pair_has_the_cells_of_a_file_of_its_own():
    for config in parse_configs(RAW):
        alone = parse_config(config.raw)
        assert [c.config_key for c in grid_cells(config)] == [c.config_key for c in grid_cells(alone)]
    a, b = parse_configs(RAW)
    assert {c.config_key for c in grid_cells(a)}.isdisjoint(c.config_key for c in grid_cells(b))


def test_a_pair_with_its_own_methods_trains_those_alone():
    own = [{"name": "qat"}, {"name": "divqat", "alpha": 0.5}]
    raw = {**RAW, "pairs": [{**PAIRS[0], "methods": own}, PAIRS[1]]}
    a, b = parse_configs(raw)
    assert [m.name for m in a.methods] == ["qat", "divqat"] and a.methods[1].kwargs == {"alpha": 0.5}
    assert [m.name for m in b.methods] == ["fp"]
    assert a.raw["methods"] == own and list(a.raw) == list(parse_configs(RAW)[0].raw)  # in the file's place
    alone = parse_config(a.raw)
    assert [c.config_key for c in grid_cells(a)] == [c.config_key for c in grid_cells(alone)]
    assert tomllib.loads(pair_toml(a.raw)) == a.raw
    without = {k: v for k, v in raw.items() if k != "methods"}  # only the pair that has them gets methods
    assert [m.name for m in parse_configs({**without, "pairs": [raw["pairs"][0]]})[0].methods] == ["qat", "divqat"]
    with pytest.raises(ValueError, match="^pairs b: "):
        parse_configs(without)


@pytest.mark.parametrize("patch, match", [
    ({"pairs": [{"name": "a", "victim": "digits", "query": "digits"}]}, r"^pairs a: unknown keys \['query'\]"),
    ({"pairs": [PAIRS[0], {**PAIRS[1], "name": "a"}]}, "^pairs: duplicate name 'a'$"),
    ({"pairs": [{"name": "a", "queryset": "digits"}]}, "^pairs a: missing required key 'victim'$"),
    ({"pairs": [{"victim": "digits"}]}, "^pairs: entry 0 needs a name"),
    ({"pairs": [{"name": "../up", "victim": "digits"}]}, "^pairs: entry 0 needs a name"),
    ({"pairs": [{"name": "a", "victim": 3}]}, r"^pairs a\.victim: expected str"),
    ({"pairs": []}, "^pairs: expected a non-empty array"),
    ({"data": {"victim": "digits"}}, r"^data\.victim: set by each \[\[pairs\]\] entry"),
    ({"data": {"queryset": "digits"}}, r"^data\.queryset: set by each \[\[pairs\]\] entry"),
    ({"data": {"train_limit": 64, "colour": 1}}, r"^pairs a: data: unknown keys \['colour'\]"),
    ({"attacks": [{"name": "knockoff", "budget": 10}]}, "^pairs b: data: missing 'queryset'"),
    ({"name": 3}, "^name: expected str, got 3$"),
])
def test_pair_errors_are_one_line_naming_the_key(patch, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_configs({**RAW, **patch})
    assert "\n" not in str(err.value)


def test_placeholder_without_pairs_and_pairs_given_to_parse_config():
    alone = {k: v for k, v in RAW.items() if k != "pairs"}
    with pytest.raises(ValueError, match=r"^name: 'grid_\{pair\}' has the \{pair\} placeholder"):
        parse_configs({**alone, "data": {"victim": "digits"}})
    with pytest.raises(ValueError, match="^pairs: a config with"):
        parse_config(RAW)


def test_load_one_pair(tiny):
    assert load_experiment_config(tiny, "right").data["queryset"] == "digits"
    with pytest.raises(ValueError, match="^--pair: .* holds the pairs left, right: name one$"):
        load_experiment_config(tiny)
    with pytest.raises(ValueError, match=r"^--pair: unknown pair 'up' \(the pairs of .*: left, right\)$"):
        load_experiment_config(tiny, "up")


def test_unknown_pair_is_refused_before_any_work(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["experiment", tiny, "--out", out, "--pair", "up", "--no-progress"],
           "--pair", "'up'", "left, right")
    assert not out.exists()
    single = tmp_path / "single.toml"
    single.write_text(TOML.replace("_{pair}", "").split("[[pairs]]")[0]
                      + '[data]\nvictim = "digits"\n[victim]\narch = "smallcnn"\n[[methods]]\nname = "fp"\n')
    _fails(capsys, ["experiment", single, "--out", out, "--pair", "left", "--no-progress"],
           "--pair", "has no [[pairs]]")
    assert not out.exists()


def _configs(out):
    return {p.stem: json.loads(p.read_text())["data"] for p in (out / "configs").glob("*.json")}


def test_each_pair_into_its_directory_or_one_pair_into_out(tiny, tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["experiment", str(tiny), "--out", str(out), "--no-progress", "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert f"tiny_left: 1 victims trained, 0 cells run, 0 cached; results in {out / 'left'}" in printed
    assert f"tiny_right: 1 victims trained, 0 cells run, 0 cached; results in {out / 'right'}" in printed
    assert _configs(out / "left") == {"tiny_left": {"victim": "digits", "train_limit": 64, "test_limit": 32}}
    assert _configs(out / "right") == {"tiny_right": {"victim": "digits", "queryset": "digits", "train_limit": 64,
                                                      "test_limit": 32}}
    assert (out / "left" / "victims.csv").is_file() and not (out / "victims").exists()
    # one pair into --out itself; the cache of a pair's directory resumes
    assert main(["experiment", str(tiny), "--out", str(out / "right"), "--pair", "right", "--no-progress",
                 "--no-report"]) == 0
    assert "tiny_right: 0 victims trained" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["left", "right"]


def test_frontier_run_takes_a_pair_or_runs_each_into_its_directory(tiny, tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(runner, "run_experiment",
                        lambda config, out, **kw: ran.append((config.name, config.seeds, out)) or {"cells_run": 0})
    out = tmp_path / "frontier"
    assert frontier.main(["run", str(tiny), str(tiny), "--out", str(out), "--seeds", "0", "--pair", "right"]) == 0
    assert ran == [("tiny_right", [0], out)] * 2
    ran.clear()
    assert frontier.main(["run", str(tiny), "--out", str(out), "--seeds", "0"]) == 0
    assert ran == [("tiny_left", [0], out / "left"), ("tiny_right", [0], out / "right")]
    ran.clear()
    assert frontier.main(["run", str(tiny), "--out", str(out), "--seeds", "0", "--pair", "up"]) == 2
    assert ran == [] and "--pair: unknown pair 'up'" in capsys.readouterr().err


def test_a_pair_written_as_a_file_reads_back_as_it_is():
    for path in sorted(Path(__file__).resolve().parents[1].glob("experiments/*.toml")):
        for config in load_experiment_configs(path):
            assert tomllib.loads(pair_toml(config.raw)) == config.raw, (path, config.pair)
    odd = {"name": "odd", "quoted key": 'say "hi"\n', "flags": [True, False], "eps": [1e-05, 0.5],
           "table": {"x": 1}, "rows": [{"a": [1, 2]}, {"a": []}]}
    assert tomllib.loads(pair_toml(odd)) == odd
    with pytest.raises(ValueError, match=r"^table\.deep: cannot be written"):
        pair_toml({"table": {"deep": {"x": 1}}})


def test_pair_files_writes_each_pair_as_a_file_of_its_own(tiny, tmp_path, capsys):
    out = tmp_path / "files"
    assert pair_files.main([str(tiny), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "tiny_left.toml"), str(out / "tiny_right.toml")]
    for name in ("left", "right"):
        alone = parse_configs(tomllib.loads((out / f"tiny_{name}.toml").read_text()))
        config = load_experiment_config(tiny, name)
        assert [(c.pair, c.name, c.raw) for c in alone] == [(None, config.name, config.raw)]
        assert [c.config_key for c in grid_cells(alone[0])] == [c.config_key for c in grid_cells(config)]
    assert pair_files.main([str(tiny), "--out", str(tmp_path / "one"), "--pair", "right"]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["tiny_right.toml"]
    assert pair_files.main([str(tiny), "--out", str(tmp_path / "none"), "--pair", "up"]) == 2
    assert "--pair: unknown pair 'up'" in capsys.readouterr().err and not (tmp_path / "none").exists()
