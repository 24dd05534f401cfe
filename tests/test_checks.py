"""divqat.checks: option values and output locations, each refused with one line naming the argument."""
import math
import os

import pytest

from divqat.checks import (
    bounds_text,
    check_choice,
    check_int,
    check_output_dir,
    check_output_dirs,
    check_output_file,
    check_real,
)

UNWRITABLE = "/proc/divqat-no-such-dir/out"  # nothing can be created below /proc, even by root


def test_check_real():
    assert check_real("x", 3) == 3.0 and isinstance(check_real("x", 3), float)
    assert check_real("x", 0.0, 0) == 0.0 and check_real("x", 1.0, 0, 1, low_open=True) == 1.0
    assert check_real("x", None, optional=True) is None
    for value, bounds, match in ((math.nan, {}, "finite"), (math.inf, {}, "finite"), (True, {}, "finite"),
                                 ("1", {}, "finite"), (None, {}, "finite"), (-0.1, {"low": 0}, ">= 0"),
                                 (0.0, {"low": 0, "low_open": True}, "> 0"), (1.5, {"low": 0, "high": 1}, r"\[0, 1\]"),
                                 (0.0, {"low": 0, "high": 1, "low_open": True}, r"\(0, 1\]")):
        with pytest.raises(ValueError, match=f"x must be .*{match}"):
            check_real("x", value, **bounds)


def test_bounds_text():
    assert [bounds_text(0), bounds_text(0, low_open=True), bounds_text(None, 1), bounds_text(0, 1),
            bounds_text(0, 1, low_open=True)] == [">= 0", "> 0", "<= 1", "in [0, 1]", "in (0, 1]"]
    with pytest.raises(ValueError, match="n must be <= 3, got 4"):
        check_int("n", 4, None, 3)


def test_check_int_and_choice():
    assert check_int("n", 4, 1) == 4 and check_int("n", None, 1, optional=True) is None
    for value, match in ((0, ">= 1"), (1.0, "integer"), (True, "integer"), (11, r"\[1, 10\]")):
        with pytest.raises(ValueError, match=f"n must be .*{match}"):
            check_int("n", value, 1, 10 if value == 11 else None)
    assert check_choice("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mode must be one of a, b, got 'c'"):
        check_choice("mode", "c", ("a", "b"))


def test_output_dir_accepts_new_and_existing_directories(tmp_path):
    check_output_dir("--out", tmp_path)
    check_output_dir("--out", tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert os.listdir(tmp_path) == []
    check_output_dirs({"--out": tmp_path, "--cache-dir": None})


def test_output_dir_refusals(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="--out .*afile is an existing file"):
        check_output_dir("--out", afile)
    with pytest.raises(ValueError, match="below the file"):
        check_output_dir("--out", afile / "sub")
    with pytest.raises(ValueError, match="--cache-dir .*cannot write"):
        check_output_dirs({"--out": tmp_path, "--cache-dir": UNWRITABLE})


def test_output_file(tmp_path):
    check_output_file("--out", tmp_path / "sub" / "r.json")
    check_output_file("--out", None, optional=True)
    with pytest.raises(ValueError, match="is a directory"):
        check_output_file("--out", tmp_path)
    with pytest.raises(ValueError, match="cannot write"):
        check_output_file("--out", UNWRITABLE + ".json")
