"""The attacks by name: the capability table, attack_call and run_attack, and every attack answering
through the counted path only."""
import pytest
import torch

from divqat.attacks import ATTACKS, TrainConfig
from divqat.blackbox import BlackBox


def test_attacks_never_use_the_uncounted_path(victim, data, monkeypatch):
    def forbidden(self, x):
        raise AssertionError("an attack called uncounted_query")

    monkeypatch.setattr(BlackBox, "uncounted_query", forbidden)
    x, y = data[0], data[1]
    fast = TrainConfig(epochs=1)
    for name, fn in ATTACKS.items():
        bb = BlackBox(victim, budget=300)
        if name in ("dfme", "maze"):
            fn(bb, 300, batch_size=8, progress=False)
        elif name == "jbda":
            fn(bb, x, 300, seeds=20, rounds=1, round_epochs=1, train=fast, progress=False)
        else:
            fn(bb, (x, y), 300, train=fast, progress=False)
        assert bb.queries_used <= 300


def test_capabilities_table():
    from divqat.attacks import CACHED, DATA_FREE, SPECS

    assert set(SPECS) == set(ATTACKS) and DATA_FREE == ("dfme", "maze") and CACHED == ("knockoff", "copycat")
    assert "reward" in SPECS["knockoff-adaptive"].options and "epochs" in SPECS["knockoff"].options
    assert "epochs" not in SPECS["dfme"].options and "grad_m" in SPECS["dfme"].options


def test_attack_call_builds_the_arguments():
    from divqat.attacks import attack_call, dfme, knockoff

    fn, kwargs = attack_call("knockoff", {"epochs": 3, "momentum": 0.9, "arch": "lenet5"}, queryset="digits",
                             device="cpu", progress=False, cache_dir="cache")
    assert fn is knockoff
    assert kwargs == {"arch": "lenet5", "queryset": "digits", "train": TrainConfig(epochs=3, momentum=0.9),
                      "cache_dir": "cache", "progress": False}
    fn, kwargs = attack_call("dfme", {"batch_size": 8, "grad_m": 2}, device="cpu")
    assert fn is dfme and kwargs == {"batch_size": 8, "grad_m": 2, "device": "cpu", "progress": True}
    _, kwargs = attack_call("copycat", {"train": {"lr": 0.1}, "epochs": 2}, queryset="digits")
    assert kwargs["train"] == TrainConfig(lr=0.1, epochs=2)


@pytest.mark.parametrize("name,options,kw,match", [
    ("steal", {}, {}, "unknown attack 'steal'"),
    ("knockoff", {"flavour": 1}, {"queryset": "digits"}, r"unknown parameters \['flavour'\]"),
    ("dfme", {"epochs": 2}, {}, r"unknown parameters \['epochs'\]"),
    ("maze", {}, {"queryset": "digits"}, "data-free"),
    ("jbda", {}, {}, "needs a query set"),
    ("jbda", {}, {"queryset": "digits", "cache_dir": "c"}, "cache_dir applies to knockoff and copycat only"),
    ("knockoff", {"lr": -1}, {"queryset": "digits"}, "lr"),
])
def test_attack_call_refuses_bad_configurations(name, options, kw, match):
    from divqat.attacks import attack_call

    with pytest.raises(ValueError, match=match):
        attack_call(name, options, **kw)


def test_run_attack_is_the_direct_call(victim, data):
    from divqat.attacks import knockoff, run_attack

    x, y = data[0], data[1]
    bb = BlackBox(victim, budget=120)
    ours, record = run_attack(bb, "knockoff", 120, seed=2, options={"epochs": 1}, queryset=(x, y), progress=False)
    direct, expected = knockoff(BlackBox(victim), (x, y), 120, seed=2, train=TrainConfig(epochs=1), progress=False)
    assert bb.queries_used == 120 and record == expected
    for a, b in zip(ours.state_dict().values(), direct.state_dict().values()):
        assert torch.equal(a, b)
