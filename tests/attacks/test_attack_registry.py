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
        elif name == "mixed":
            fn(bb, (x, y), 300, victim_data="digits", thief_from=200, train=fast, progress=False)
        else:
            fn(bb, (x, y), 300, train=fast, progress=False)
        assert bb.queries_used <= 300


def test_capabilities_table():
    from divqat.attacks import CACHED, DATA_FREE, SPECS

    assert set(SPECS) == set(ATTACKS) and DATA_FREE == ("dfme", "maze")
    assert CACHED == ("knockoff", "copycat", "sink-aware")
    assert "reward" in SPECS["knockoff-adaptive"].options and "epochs" in SPECS["knockoff"].options
    assert "epochs" not in SPECS["dfme"].options and "grad_m" in SPECS["dfme"].options


def test_every_query_set_attack_takes_a_surrogate_arch():
    from divqat.attacks import SPECS

    assert all("arch" in spec.options for spec in SPECS.values() if not spec.data_free)


@pytest.mark.parametrize("name", ["knockoff", "copycat", "sink-aware", "smoothing"])
def test_mismatched_surrogate_and_answered_histogram(victim, data, name):
    """A surrogate of another architecture than the victim's (published smallcnn), and the
    histogram of the answered labels: with the whole query set queried, the victim's argmax
    counts on it (times k for the smoothing thief's copies, which shift=0 and noise=0 leave equal)."""
    from divqat.attacks import run_attack

    x = data[0][:240]
    k = 4 if name == "smoothing" else 1
    options = {"epochs": 1, "arch": "resnet8", **({"shift": 0, "noise": 0.0} if name == "smoothing" else {})}
    bb = BlackBox(victim, budget=240 * k)
    surrogate, record = run_attack(bb, name, 240 * k, options=options, queryset=x, progress=False)
    assert surrogate.arch == record["arch"] == "resnet8" and record["victim_arch"] == "smallcnn"
    with torch.no_grad():
        counts = torch.bincount(victim(x).argmax(1), minlength=10) * k
    assert record["answered_hist"] == {str(c): int(n) for c, n in enumerate(counts)}


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
    ("jbda", {}, {"queryset": "digits", "cache_dir": "c"}, "cache_dir applies to knockoff, copycat, sink-aware only"),
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
