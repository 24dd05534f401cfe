"""What every attack does first and last: check the budget, seed, build the surrogate, log parameters."""
from divqat.attacks.surrogate import build_surrogate
from divqat.checks import check_int, check_real
from divqat.utils import seed_everything

__all__ = ["setup_attack", "attack_record", "queryset_name", "check_ints", "check_positive"]


def setup_attack(blackbox, budget, arch, seed):
    """Validate ``budget`` against the black box, seed python/numpy/torch with ``seed``, and
    return a fresh surrogate of ``arch`` (default: the victim's)."""
    check_ints(1, budget=budget)
    left = blackbox.budget_left
    if left is not None and budget > left:
        raise ValueError(f"budget {budget} exceeds the {left} queries the black box has left")
    seed_everything(seed)
    return build_surrogate(blackbox, arch)


def queryset_name(queryset):
    """How a query set is logged: its dataset name, or "tensors"."""
    return queryset if isinstance(queryset, str) else "tensors"


def attack_record(attack, blackbox, surrogate, budget, seed, queries_used, **params):
    """The result record: the attack's name, what it spent, and its parameters."""
    return {"attack": attack, "budget": budget, "queries_used": int(queries_used), "seed": seed,
            "arch": surrogate.arch, "victim_arch": blackbox.arch, "output": blackbox.output, **params}


def check_ints(low, **values):
    """ValueError naming the first of ``values`` that is not an int >= ``low``."""
    for name, value in values.items():
        check_int(name, value, low)


def check_positive(**values):
    """ValueError naming the first of ``values`` that is not a finite number > 0."""
    for name, value in values.items():
        check_real(name, value, 0, low_open=True)
