"""scripts/label_only_screen.py: every candidate falls in the family it is named for (so the rule
picks per family, and the permute target's second-round families are not mixed into the first
round's, nor the third round's swap target into either), and a setting without a second round is
refused before any training."""
import json

import pytest
from repo_scripts import SCRIPTS, load_script


@pytest.fixture(scope="module")
def screen():
    return load_script("label_only_screen")


def test_each_candidate_belongs_to_its_own_family(screen):
    assert screen.family("proxy-permute a0.3") == "proxy-permute"
    assert screen.family("proxy-permute-distill3 a1") == "proxy-permute-distill3"
    assert screen.family("misinform a0.25") == "misinform"
    assert [screen.family(n) for n in screen.CANDIDATES["full", 2]] == [
        "qat", "proxy-permute-distill3", "proxy-permute-distill3", "proxy-permute-epochs6", "proxy-permute-epochs6"]
    second = screen.CANDIDATES["full", 2]
    assert second["proxy-permute-distill3 a3"] == dict(method="divqat", objective="proxy", proxy_source="glyphs",
                                                       proxy_target="permute", alpha=3.0, distill=3.0)
    assert second["proxy-permute-epochs6 a1"]["epochs"] == 6 and second["proxy-permute-epochs6 a1"]["distill"] == 1.0
    third = screen.CANDIDATES["full", 3]
    assert [screen.family(n) for n in third] == ["qat"] + ["proxy-swap"] * 4
    assert third["proxy-swap a0.3"] == dict(method="divqat", objective="proxy", proxy_source="glyphs",
                                            proxy_target="swap", alpha=0.3, distill=1.0)
    fourth = screen.CANDIDATES["full", 4]
    assert [screen.family(n) for n in fourth] == ["qat"] + ["proxy-keep_sink"] * 4 + ["proxy-keep_sink-epochs6"] * 2
    assert fourth["proxy-keep_sink-epochs6 a3"]["epochs"] == 6 and fourth["proxy-keep_sink a1"]["proxy_target"] == "keep_sink"


def test_a_second_round_of_the_quick_setting_is_refused_before_any_work(screen, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        screen.main([str(tmp_path / "out"), "--round", "2"])
    assert exit_info.value.code == 2 and "--round" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_that_holds_another_screen_is_refused(screen, tmp_path, capsys):
    (tmp_path / "screen.json").write_text(json.dumps({"setting": "quick", "dataset": "mnist"}))
    with pytest.raises(SystemExit) as exit_info:
        screen.main([str(tmp_path), "--setting", "full", "--dataset", "fashion-mnist", "--round", "2"])
    assert exit_info.value.code == 2 and "holds the screen of" in capsys.readouterr().err


GUIDE = SCRIPTS.parent / "docs" / "guide" / "label-only.md"
SCREENS = sorted((SCRIPTS.parent / "docs" / "results" / "data" / "label_only").glob("screen*.csv"))


@pytest.mark.parametrize("csv_path", SCREENS, ids=lambda p: p.name)
def test_the_guides_screen_tables_are_the_committed_screens_with_the_rules_picks_in_bold(screen, csv_path):
    """Every row of a committed screen is a row of the guide's table of it (held-out top-1, its
    difference from QAT's, the outlier shares), in bold exactly when the rule
    (divqat.train.label_selection.select_setting, per family: the script's picks) picks it."""
    import csv

    rows = [{k: (v if k == "setting" else float(v)) for k, v in r.items()} for r in csv.DictReader(csv_path.open())]
    assert rows[0]["setting"] == "qat"
    qat = rows[0]["heldout_top1"]
    picked = {pick["setting"] for pick in screen.picks(rows).values() if pick}
    guide = " ".join(GUIDE.read_text().split())  # an empty cell may hold one space or two
    assert len(rows) > 1
    for r in rows:
        label = r["setting"].replace(" a", " α ", 1)
        delta = "" if r["setting"] == "qat" else f"{r['heldout_top1'] - qat:+.2f}".replace("-", "−")
        cells = f"| {r['heldout_top1']:.2f} | {delta} | {r['outlier_change']:.2f} | {r['outlier_top_share']:.2f} |"
        name = f"**{label}**" if r["setting"] in picked else label
        assert " ".join(f"| {name} {cells}".split()) in guide, f"{csv_path.name}: {r['setting']}"
