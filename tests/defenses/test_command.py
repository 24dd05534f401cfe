"""`divqat defenses`: every defense, parameter, range and default of the tables is printed."""
from divqat.cli import main
from divqat.defenses import DEFENSES


def test_lists_every_defense_parameter_and_default(capsys):
    assert main(["defenses"]) == 0
    out = capsys.readouterr().out
    for name, cls in DEFENSES.items():
        assert f"\n{name}" in "\n" + out, name
        for p in cls.PARAMS:
            assert f"--defense-arg {p.name}=VALUE" in out and p.help in out, (name, p.name)
            assert f"valid: {p.range_text()}; default: {p.default_text()}" in out, (name, p.name)
    assert "default: 0.1" in out and "default: required" in out  # reverse sigmoid's gamma; DCP's beta


def test_one_defense_by_alias_and_unknown_name(capsys):
    assert main(["defenses", "am"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("adaptive_misinformation (aliases: am)") and "\ndcp" not in out
    assert main(["defenses", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("divqat defenses: error: unknown defense 'nope'") and len(err.splitlines()) == 1
