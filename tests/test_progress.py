"""divqat.progress: plain lines without escape codes off a terminal, a tqdm bar on one, counts in
the real unit; and the real commands' output when redirected (digits, tiny runs)."""
import io
import json
import re

import pytest

from divqat.progress import Progress, progress_bar

ESCAPES = re.compile(r"[\x1b\r\b]")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _lines(text):
    return [line for line in text.splitlines() if line]


def test_plain_lines_count_units_of_each_item(monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    chunks = range(0, 2500, 1024)  # 3 chunks: 1024, 1024, 452 queries
    seen = list(progress_bar(chunks, total=2500, desc="querying", unit="queries",
                             size=lambda i: min(1024, 2500 - i), stream=out))
    assert seen == [0, 1024, 2048]
    lines = _lines(out.getvalue())
    assert [re.match(r"querying: (\d+)/2500 queries \((\d+)%\)", line).groups() for line in lines] == [
        ("1024", "41"), ("2048", "82"), ("2500", "100")]
    assert not ESCAPES.search(out.getvalue())


def test_plain_lines_wait_for_the_interval_then_one_final_line(monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    with Progress(total=10, desc="cells", unit="cells", stream=out, leave=True) as bar:
        for _ in range(10):
            bar.update(1)
        bar.set_postfix_str("running: seed 0 qat")
        assert out.getvalue() == ""  # nothing before the interval has passed
    assert _lines(out.getvalue()) == [out.getvalue().strip()]
    assert out.getvalue().startswith("cells: 10/10 cells (100%), ") and "; running: seed 0 qat" in out.getvalue()
    bar.close()  # closing twice prints nothing more
    assert len(_lines(out.getvalue())) == 1


def test_disabled_prints_nothing_and_terminal_gets_a_bar(monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    quiet = io.StringIO()
    assert list(progress_bar(range(3), desc="x", enabled=False, stream=quiet)) == [0, 1, 2]
    assert quiet.getvalue() == ""
    tty = _Terminal()
    bar = progress_bar(range(4), total=32, desc="images", unit="images", size=lambda i: 8, stream=tty, leave=True)
    assert not bar.plain and list(bar) == [0, 1, 2, 3]
    bar.close()
    assert "32/32" in tty.getvalue() and "\r" in tty.getvalue()  # tqdm's bar, redrawn in place


def test_bad_interval_is_one_line_error(monkeypatch):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="DIVQAT_PROGRESS_INTERVAL"):
        Progress(total=1, stream=io.StringIO())


def _divqat(*argv):
    from divqat.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def digits_victim(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("victim")
    assert _divqat("train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "2", "--device", "cpu",
                   "--out", out) == 0
    return out


def test_train_output_redirected_is_plain_and_counts_images(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    assert _divqat("train", "--dataset", "digits", "--arch", "smallcnn", "--epochs", "1", "--limit", "300",
                   "--batch-size", "128", "--device", "cpu", "--out", tmp_path / "fp") == 0
    captured = capsys.readouterr()
    assert not ESCAPES.search(captured.err + captured.out)
    counts = re.findall(r"^fp epoch 1/1: (\d+)/300 images", captured.err, re.M)
    assert counts == ["128", "256", "300"]  # images, batch by batch (not 1/3, 2/3, 3/3 batches)


def test_attack_output_redirected_is_plain_and_counts_queries(digits_victim, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    out = tmp_path / "attack"
    assert _divqat("attack", "--victim", digits_victim, "--attack", "knockoff", "--queryset", "digits",
                   "--budget", 1200, "--epochs", 2, "--device", "cpu", "--out", out) == 0
    captured = capsys.readouterr()
    assert not ESCAPES.search(captured.err + captured.out)
    # two query calls (1024 + 176 rows) counted in queries, then the surrogate's epochs
    assert re.findall(r"^querying: (\d+)/1200 queries", captured.err, re.M) == ["1024", "1200"]
    assert re.findall(r"^knockoff: (\d)/2 epochs", captured.err, re.M) == ["1", "2"]
    assert json.loads((out / "metrics.json").read_text())["queries_used"] == 1200


def test_short_inner_steps_stay_silent(digits_victim, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "3600")
    assert _divqat("attack", "--victim", digits_victim, "--attack", "knockoff", "--queryset", "digits",
                   "--budget", 1200, "--epochs", 2, "--device", "cpu", "--out", tmp_path) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and _lines(captured.out)[-1].startswith("knockoff: 1200 queries, agreement ")


def test_inner_step_longer_than_the_interval_ends_with_its_total():
    out = io.StringIO()
    bar = Progress(total=300, desc="querying", unit="queries", stream=out)
    bar._interval = 0  # the first chunk took longer than the interval: a line
    bar.update(100)
    bar._interval = 3600  # the next ones were quick: no line until the end
    bar.update(100)
    bar.update(100)
    bar.close()
    assert [line.split(" (")[0] for line in _lines(out.getvalue())] == [
        "querying: 100/300 queries", "querying: 300/300 queries"]


def test_grid_counts_victims_and_cells_and_names_the_running_one(tmp_path, monkeypatch, capsys):
    from test_experiments_runner import FakePipeline

    from divqat.experiments.config import parse_config
    from divqat.experiments.runner import run_experiment

    monkeypatch.setenv("DIVQAT_PROGRESS_INTERVAL", "0")
    raw = {"name": "grid", "seeds": [0, 1], "data": {"victim": "digits", "queryset": "digits"},
           "victim": {"arch": "lenet5", "epochs": 1}, "quant": {"epochs": 1},
           "methods": [{"name": "qat"}, {"name": "divqat", "alpha": 1.0}],
           "defenses": [{"name": "none"}], "attacks": [{"name": "knockoff", "budget": [100, 200]}]}
    run_experiment(parse_config(raw), tmp_path, pipeline=FakePipeline(), report=False)
    err = capsys.readouterr().err
    assert not ESCAPES.search(err)
    lines = re.findall(r"^experiment grid: (\d+)/14 cells \(\d+%\), [^;\n]*(?:; running: (.*))?$", err, re.M)
    # per seed 3 victims (the bar moves while they train), then 2 victims x 2 budgets: a line as
    # each cell starts (what runs) and as it ends (the count)
    assert len(lines) == 2 * 14 and len(_lines(err)) == 2 * 14
    assert [(int(n), running) for n, running in lines[:8]] == [
        (0, "seed 0 fp"), (1, ""), (1, "seed 0 qat"), (2, ""), (2, "seed 0 divqat(alpha=1.0)"), (3, ""),
        (3, "seed 0 qat | none | knockoff(budget=200)"), (4, "")]
    assert lines[-1] == ("14", "")
