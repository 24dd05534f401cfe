"""Defenses by name: CLI strings parsed, argparse options, aliases."""
import argparse

import pytest
from defense_helpers import make_mlp

from divqat.defenses import (
    AdaptiveMisinformation,
    add_defense_arguments,
    build_defense,
    defense_from_args,
    parse_defense_args,
)


def test_build_defense_parses_cli_strings():
    assert repr(build_defense("DCP", beta="0.5", cap_log_odds="false")) == \
        "DCP(beta=0.5, gamma=0.2, nu=1000.0, cap_log_odds=False)"
    assert repr(build_defense("top-k", k="3")) == "TopK(k=3)"
    assert repr(build_defense("label")) == "LabelOnly()"
    assert repr(build_defense("random-noise", epsilon="0.2", dist="l2", seed="7")) == \
        "RandomNoise(epsilon=0.2, dist='l2', seed=7)"
    model = make_mlp(2, 3)
    am = build_defense("am", model=model, tau="0.4")
    assert isinstance(am, AdaptiveMisinformation) and am.misinformation_model is model and am.tau == 0.4
    mad = build_defense("mad", model=model, epsilon="1", keep_argmax="yes")
    assert mad.surrogate is model and mad.keep_argmax and mad.epsilon == 1.0
    assert repr(mad) == repr(build_defense("mad", surrogate=make_mlp(2, 3), epsilon=1.0, keep_argmax=True))  # same weights


def test_defense_arguments_from_argparse():
    parser = argparse.ArgumentParser()
    add_defense_arguments(parser)
    args = parser.parse_args(["--defense", "dcp", "--defense-arg", "beta=0.5", "--defense-arg", "gamma = 0.1"])
    assert repr(defense_from_args(args)) == "DCP(beta=0.5, gamma=0.1, nu=1000.0, cap_log_odds=True)"
    assert defense_from_args(parser.parse_args([])) is None
    with pytest.raises(ValueError, match="without --defense"):
        defense_from_args(parser.parse_args(["--defense-arg", "beta=1"]))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_defense_args(["beta"])
    with pytest.raises(ValueError, match="twice"):
        parse_defense_args(["beta=1", "beta=2"])


@pytest.mark.parametrize("name,expected", [
    ("reverse-sigmoid", "ReverseSigmoid(beta=1.0, gamma=0.1)"),  # Lee et al. 2019, ART's defaults
    ("rounding", "Rounding(decimals=3)"),
    ("topk", "TopK(k=1)"),
    ("label", "LabelOnly()"),
    ("random-noise", None),
])
def test_published_defaults_need_no_arguments(name, expected):
    if expected is None:  # its budget has no published value: the error names it
        with pytest.raises(ValueError, match="needs epsilon"):
            build_defense(name)
    else:
        assert repr(build_defense(name)) == expected


def test_dcp_defaults_are_the_papers():
    assert repr(build_defense("dcp", beta=1)) == "DCP(beta=1.0, gamma=0.2, nu=1000.0, cap_log_odds=True)"


def test_aliases_come_from_the_classes():
    from divqat.defenses import ALIASES, DEFENSES

    assert ALIASES == {"am": "adaptive_misinformation", "top_k": "topk", "label": "label_only"}
    assert all(cls.NAME == name for name, cls in DEFENSES.items())


def test_mad_surrogate_defaults_to_a_random_model_of_the_victim(tmp_path):
    import torch

    from divqat.defenses import random_model_like
    from divqat.models import build_model
    from divqat.train.artifacts import start_run, write_run_results

    meta = dict(num_classes=10, in_channels=1, image_size=8, mean=(0.3,), std=(0.4,))
    victim = build_model("smallcnn", **meta)
    start_run(tmp_path, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                            "meta": meta})
    write_run_results(tmp_path, victim, {})
    state = torch.random.get_rng_state()
    mad = build_defense("mad", epsilon="0.5", victim=str(tmp_path), victim_seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    torch.manual_seed(4)
    expected = build_model("smallcnn", **meta)
    for a, b in zip(mad.surrogate.state_dict().values(), expected.state_dict().values()):
        assert torch.equal(a, b)
    assert mad.surrogate.arch == "smallcnn" and repr(mad) == repr(build_defense("mad", epsilon=0.5, victim=victim,
                                                                                victim_seed=4))
    assert repr(random_model_like(victim)) == repr(random_model_like(str(tmp_path)))
    parser = argparse.ArgumentParser()
    add_defense_arguments(parser)
    parser.add_argument("--victim")
    args = parser.parse_args(["--defense", "mad", "--defense-arg", "epsilon=0.5", "--victim", str(tmp_path)])
    assert repr(defense_from_args(args)) == repr(build_defense("mad", epsilon=0.5, victim=victim))  # seed 0
    with pytest.raises(ValueError, match="needs surrogate"):
        build_defense("mad", epsilon=0.5)  # no victim to take the architecture from


def test_evaluate_with_reverse_sigmoid_and_its_defaults(tmp_path, capsys):
    """`divqat evaluate --defense reverse-sigmoid` (which once needed beta and gamma) runs with
    the published defaults, and MAD with only its budget (a random surrogate of the victim's
    architecture)."""
    from divqat.cli import main
    from divqat.models import build_model_for
    from divqat.train.artifacts import start_run, write_run_results

    victim = build_model_for("smallcnn", "digits")
    start_run(tmp_path, {"arch": "smallcnn", "dataset": "digits", "method": "fp", "quantized": False,
                            "meta": dict(victim.meta)})
    write_run_results(tmp_path, victim, {})
    common = ["evaluate", "--victim", str(tmp_path), "--victim-kind", "float", "--test-limit", "20", "--repeats", "1",
              "--no-progress"]
    assert main(common + ["--defense", "reverse-sigmoid"]) == 0
    assert "defense: ReverseSigmoid(beta=1.0, gamma=0.1)" in capsys.readouterr().out
    assert main(common + ["--defense", "mad", "--defense-arg", "epsilon=0.5"]) == 0
    assert f"defense: {build_defense('mad', epsilon=0.5, victim=str(tmp_path))!r}" in capsys.readouterr().out
