"""The extraction attacks by name: one table of what each can do, and one function that turns an
attack's configuration into the call that runs it (used by ``divqat attack`` and the experiment
pipeline alike).

Capabilities (:class:`AttackSpec`):
    data_free   it synthesises its own queries (DFME, MAZE): no query set, and its own
                hyperparameters instead of a surrogate :class:`~divqat.attacks.surrogate.TrainConfig`
    cached      its queries do not depend on the surrogate (KnockoffNets random, Copycat, the
                sink-aware thief), so its answers can be kept in a transfer-set cache (``cache_dir``)
    splits_test it draws in-distribution queries from the victim's test split (the mixed thief,
                :mod:`divqat.attacks.mixed`): its caller passes ``victim_data`` (the victim's
                dataset) and scores the surrogate on the test images before ``thief_from`` only
                (:func:`scoring_limit`)
"""
import inspect
from dataclasses import asdict, dataclass, fields

from divqat.attacks.copycat import copycat
from divqat.attacks.dfme import dfme
from divqat.attacks.jbda import jbda
from divqat.attacks.knockoff import knockoff
from divqat.attacks.knockoff_adaptive import knockoff_adaptive
from divqat.attacks.maze import maze
from divqat.attacks.mixed import mixed
from divqat.attacks.sink_aware import sink_aware
from divqat.attacks.smoothing import smoothing
from divqat.attacks.surrogate import TrainConfig, make_train_config

__all__ = ["AttackSpec", "SPECS", "ATTACKS", "DATA_FREE", "CACHED", "attack_spec", "attack_call", "run_attack",
           "scoring_limit"]

#: the arguments every attack takes from its caller rather than from its configuration
_CALLER_ARGS = ("blackbox", "budget", "queryset", "seed", "progress", "cache_dir", "device", "train", "victim_data")
_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name != "device")


@dataclass(frozen=True)
class AttackSpec:
    """An attack's name, function and capabilities (see the module docstring)."""

    name: str
    fn: object
    data_free: bool = False
    cached: bool = False
    splits_test: bool = False

    @property
    def options(self):
        """The attack's own keyword options (its hyperparameters; for query-set attacks also the
        surrogate training fields of TrainConfig), as its function's signature lists them."""
        own = [name for name in inspect.signature(self.fn).parameters if name not in _CALLER_ARGS]
        return tuple(own) + (() if self.data_free else _TRAIN_FIELDS)


#: CLI name -> what the attack is and can do
SPECS = {spec.name: spec for spec in (
    AttackSpec("knockoff", knockoff, cached=True),
    AttackSpec("knockoff-adaptive", knockoff_adaptive),
    AttackSpec("copycat", copycat, cached=True),
    AttackSpec("jbda", jbda),
    AttackSpec("dfme", dfme, data_free=True),
    AttackSpec("maze", maze, data_free=True),
    AttackSpec("sink-aware", sink_aware, cached=True),
    AttackSpec("smoothing", smoothing),
    AttackSpec("mixed", mixed, splits_test=True),
)}
#: CLI name -> attack function.
ATTACKS = {name: spec.fn for name, spec in SPECS.items()}
#: Attacks that need no query set.
DATA_FREE = tuple(name for name, spec in SPECS.items() if spec.data_free)
#: Attacks whose answers a transfer-set cache can keep.
CACHED = tuple(name for name, spec in SPECS.items() if spec.cached)


def attack_spec(name):
    """The :class:`AttackSpec` of ``name``; ValueError listing the attacks if unknown."""
    if name not in SPECS:
        raise ValueError(f"unknown attack {name!r}; choose from {', '.join(SPECS)}")
    return SPECS[name]


def attack_call(name, options=None, *, queryset=None, device="cpu", progress=True, cache_dir=None, victim_data=None):
    """``(fn, kwargs)`` such that ``fn(blackbox, budget=..., seed=..., **kwargs)`` runs the attack.

    ``options`` are the attack's own options (:attr:`AttackSpec.options`): its hyperparameters
    and, for the attacks that train a surrogate on a query set, the fields of
    :class:`~divqat.attacks.surrogate.TrainConfig` (``epochs``, ``lr``, ...), given flat or as
    ``train=``. ``queryset`` is required by, and refused for a data-free attack; ``cache_dir``
    only applies to the cached ones; ``victim_data`` (the victim's dataset name) is passed to
    the attacks that split its test set and ignored by the others; ``device`` is where the
    surrogate trains. Everything is checked here, before any query: ValueError names the attack
    and the bad option.
    """
    spec = attack_spec(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options) - ({"train"} if not spec.data_free else set()))
    if unknown:
        raise ValueError(f"attack {name}: unknown parameters {unknown}; its parameters: {', '.join(spec.options)}")
    if spec.data_free:
        if queryset is not None:
            raise ValueError(f"{name} is data-free: it takes no query set")
        kwargs = {**options, "device": device}
    else:
        if queryset is None:
            raise ValueError(f"{name} needs a query set (the adversary's natural images)")
        train = asdict(make_train_config(options.pop("train", None)))
        train.update({key: options.pop(key) for key in _TRAIN_FIELDS if key in options}, device=device)
        kwargs = {**options, "queryset": queryset, "train": make_train_config(train)}
    if cache_dir is not None:
        if not spec.cached:
            raise ValueError(f"cache_dir applies to {', '.join(CACHED)} only "
                             "(their queries do not depend on the surrogate)")
        kwargs["cache_dir"] = cache_dir
    if spec.splits_test:
        if not isinstance(victim_data, str):
            raise ValueError(f"{name} draws from the victim's test split: give victim_data (its dataset name)")
        kwargs["victim_data"] = victim_data
    return spec.fn, {**kwargs, "progress": progress}


def scoring_limit(name, options=None):
    """How many of the victim's first test images score attack ``name`` with ``options``: the
    images before its ``thief_from`` for an attack that splits the test set, else None (all)."""
    spec = attack_spec(name)
    if not spec.splits_test:
        return None
    return dict(options or {}).get("thief_from", inspect.signature(spec.fn).parameters["thief_from"].default)


def run_attack(blackbox, name, budget, *, seed=0, **config):
    """Run attack ``name`` on ``blackbox`` with ``budget`` queries: :func:`attack_call` ``(name, **config)``
    then the call. Returns ``(surrogate, record)``."""
    fn, kwargs = attack_call(name, **config)
    return fn(blackbox, budget=budget, seed=seed, **kwargs)
