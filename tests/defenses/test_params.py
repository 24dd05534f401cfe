"""The parameter tables: every constructor refuses a bad value with an error naming it."""
import pytest
from defense_helpers import make_mlp

from divqat.defenses import (
    DCP,
    MAD,
    AdaptiveMisinformation,
    Param,
    RandomNoise,
    ReverseSigmoid,
    Rounding,
    TopK,
    build_defense,
)


@pytest.mark.parametrize("make,name", [
    (lambda: DCP(-0.1), "beta"), (lambda: DCP(0.5, gamma=-1), "gamma"), (lambda: DCP(0.5, nu=-1), "nu"),
    (lambda: DCP(float("nan")), "beta"), (lambda: DCP(0.5, cap_log_odds="yes"), "cap_log_odds"),
    (lambda: ReverseSigmoid(-1, 0.5), "beta"), (lambda: ReverseSigmoid(0.5, -0.5), "gamma"),
    (lambda: TopK(0), "k"), (lambda: TopK(1.5), "k"), (lambda: Rounding(-1), "decimals"), (lambda: Rounding(16), "decimals"),
    (lambda: RandomNoise(-0.1), "epsilon"), (lambda: RandomNoise(0.1, dist="kl"), "dist"),
    (lambda: MAD(make_mlp(2, 3), -0.5), "epsilon"), (lambda: MAD(make_mlp(2, 3), 0.5, ydist="kl"), "ydist"),
    (lambda: MAD(make_mlp(2, 3), 0.5, oracle="random"), "oracle"), (lambda: MAD("model", 0.5), "surrogate"),
    (lambda: AdaptiveMisinformation(make_mlp(2, 3), tau=1.5), "tau"),
    (lambda: AdaptiveMisinformation(make_mlp(2, 3), tau=0.5, nu=-1), "nu"),
    (lambda: build_defense("nope"), "unknown defense"), (lambda: build_defense("dcp"), "beta"),
    (lambda: build_defense("dcp", beta="high"), "beta"), (lambda: build_defense("dcp", beta=1, k=2), "k"),
    (lambda: build_defense("topk", k="2.5"), "k"), (lambda: build_defense("mad", surrogate="/nonexistent", epsilon=1),
                                                     "surrogate"),
])
def test_bad_parameters_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_each_table_drives_the_constructor_and_params():
    """Positional and keyword arguments bind in table order, defaults fill the rest, and
    params() lists exactly the table's parameters in its order."""
    from divqat.defenses import DEFENSES

    required = {"beta": 0.3, "epsilon": 0.2, "tau": 0.4, "surrogate": make_mlp(2, 3),
                "misinformation_model": make_mlp(2, 3)}
    for name, cls in DEFENSES.items():
        args = {p.name: required[p.name] for p in cls.PARAMS if p.required}
        defense = cls(**args)
        assert list(defense.params()) == [p.name for p in cls.PARAMS], name
        for p in cls.PARAMS:
            expected = args.get(p.name, p.default)
            if p.type != "model":
                assert getattr(defense, p.name) == expected and defense.params()[p.name] == expected, (name, p.name)
        positional = cls(*[args.get(p.name, p.default) for p in cls.PARAMS])
        assert repr(positional) == repr(defense), name


def test_bind_refuses_extra_repeated_and_missing_arguments():
    with pytest.raises(ValueError, match="at most 4 arguments"):
        DCP(0.1, 0.2, 3.0, True, 5)
    with pytest.raises(ValueError, match="'beta' given twice"):
        DCP(0.1, beta=0.2)
    with pytest.raises(ValueError, match="no argument 'k'"):
        DCP(0.1, k=2)
    with pytest.raises(ValueError, match="needs tau"):
        AdaptiveMisinformation(make_mlp(2, 3))


@pytest.mark.parametrize("param,text,value", [
    (Param("a", "real"), "0.25", 0.25), (Param("a", "int"), "7", 7), (Param("a", "bool"), "YES", True),
    (Param("a", "bool"), "0", False), (Param("a", "choice", choices=("l1", "l2")), "l2", "l2"),
])
def test_param_parses_command_line_strings(param, text, value):
    assert param.parse(text) == value and type(param.parse(text)) is type(value)


@pytest.mark.parametrize("param,text,match", [
    (Param("a", "real", low=0.0), "x", "expected a number >= 0.0, got 'x'"),
    (Param("a", "int", low=1, high=3), "2.5", r"expected an integer in \[1, 3\], got '2.5'"),
    (Param("a", "bool"), "maybe", "expected true or false"),
])
def test_param_parse_errors_say_what_is_valid(param, text, match):
    with pytest.raises(ValueError, match=match):
        param.parse(text)


def test_param_check_bounds_and_kinds():
    assert Param("a", "real", low=0.0, high=1.0).check(1) == 1.0
    with pytest.raises(ValueError, match=r"a must be in \[0.0, 1.0\], got 1.5"):
        Param("a", "real", low=0.0, high=1.0).check(1.5)
    with pytest.raises(ValueError, match="a must be one of"):
        Param("a", "choice", choices=("x",)).check("y")
    with pytest.raises(ValueError, match="a must be an nn.Module"):
        Param("a", "model").check("dir")
    with pytest.raises(ValueError, match="type must be one of"):
        Param("a", "float")
