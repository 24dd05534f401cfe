"""scripts/label_only_drop_probe.py: a victim pattern that does not name exactly one victim
folder of the run is refused, naming the argument, before any attack runs."""

import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def drop_probe():
    return load_script("label_only_drop_probe")


@pytest.mark.parametrize("pattern, found", [("qat-seed0-*", 2), ("fp-seed0-*", 0)])
def test_a_pattern_that_names_no_single_victim_is_refused(drop_probe, tmp_path, capsys, pattern, found):
    for name in ("qat-seed0-aaaa", "qat-seed0-bbbb", "divqat-seed0-cccc"):
        (tmp_path / "victims" / name).mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        drop_probe.main([str(tmp_path), "fashion-mnist", "mnist", "0", "divqat-seed0-*", pattern])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "VICTIM_GLOB" in err and f"matches {found} victim folders" in err
