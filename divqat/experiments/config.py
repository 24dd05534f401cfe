"""An experiment configuration (TOML) and its expansion into a grid.

Layout of a config file (every list-valued parameter is swept, scalars are fixed)::

    name = "mnist-fmnist"
    seeds = [0, 1, 2]
    device = "cpu"              # training and attacks (auto | cpu | cuda | cuda:N)

    [data]                      # victim's dataset, the attacker's query set, optional limits
    victim = "mnist"
    queryset = "fashion-mnist"
    train_limit = 20000         # victim training examples (all if absent)
    test_limit = 2000           # evaluation examples (all if absent)

    [victim]                    # the full-precision victim (the DivQAT teacher): `divqat train`
    arch = "lenet5"             # options (epochs, lr, batch_size, optimizer, ...), plus
    epochs = 5                  # deploy = "auto" | "float" | "fake_quant" | "int8" (what answers)

    [quant]                     # `divqat train` options of every quantized method (overriding [victim])
    epochs = 2
    bits = 8

    [[methods]]                 # fp | ptq | qat | divqat | adv-fgsm | adv-pgd
    name = "divqat"
    alpha = [0.5, 1.0]
    direction = ["forward", "reverse"]

    [[defenses]]                # "none" or a divqat.defenses name with its parameters
    name = "dcp"
    beta = [0.5, 1.0]

    [[attacks]]                 # a divqat.attacks name, the budgets, its parameters (surrogate
    name = "knockoff"           # TrainConfig fields such as epochs or momentum go to train=)
    budget = [1000, 5000]
    epochs = 10

    [robustness]                # optional (SCIENCE.md §7): accuracy under attack of victims
    attacks = ["fgsm", "pgd"]   # and surrogates
    eps = [0.0, 0.03, 0.1]
    limit = 500

A *method*, *defense* or *attack* entry with list values expands into the Cartesian product of
its lists (:func:`expand`). Cells of the grid are built in :mod:`divqat.experiments.cells`.
"""
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("fp", "ptq", "qat", "divqat", "adv-fgsm", "adv-pgd")
QUANTIZED_METHODS = ("ptq", "qat", "divqat")
TEACHER_METHODS = ("ptq", "qat", "divqat")  # built from the trained full-precision victim
TOP_KEYS = {"name", "seeds", "device", "data", "victim", "quant", "methods", "defenses",
            "attacks", "robustness"}


@dataclass(frozen=True)
class Entry:
    """One point of a sweep: a name and its fixed parameters (sorted items)."""

    name: str
    params: tuple = ()

    @property
    def kwargs(self):
        return dict(self.params)

    @property
    def label(self):
        """Human label, e.g. ``divqat(alpha=1.0, direction=forward)``."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})"

    def as_dict(self):
        return {"name": self.name, **self.kwargs}


@dataclass
class ExperimentConfig:
    """A parsed, validated experiment: see the module docstring for the file layout."""

    name: str
    seeds: list
    data: dict
    victim: dict
    quant: dict
    methods: list          # list[Entry], expanded
    defenses: list         # list[Entry], expanded
    attacks: list          # list[Entry], expanded; budget is one of the params
    robustness: dict = field(default_factory=dict)
    device: str = "cpu"
    raw: dict = field(default_factory=dict)


def expand(table, where):
    """Expand one ``[[methods]]``/``[[defenses]]``/``[[attacks]]`` table into Entries: the
    Cartesian product of its list-valued parameters (in sorted key order)."""
    if not isinstance(table, dict) or "name" not in table:
        raise ValueError(f"{where}: every entry needs a name, got {table!r}")
    name = table["name"]
    keys = sorted(k for k in table if k != "name")
    values = []
    for k in keys:
        v = table[k]
        if isinstance(v, list):
            if not v:
                raise ValueError(f"{where} {name}: parameter {k!r} is an empty list")
            values.append(v)
        elif isinstance(v, dict):
            raise ValueError(f"{where} {name}: parameter {k!r} must be a scalar or a list")
        else:
            values.append([v])
    return [Entry(name, tuple(zip(keys, combo))) for combo in itertools.product(*values)]


def _require(mapping, key, where, kind):
    if key not in mapping:
        raise ValueError(f"{where}: missing required key {key!r}")
    if not isinstance(mapping[key], kind):
        raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {mapping[key]!r}")
    return mapping[key]


def _validate_methods(entries):
    for e in entries:
        if e.name not in METHODS:
            raise ValueError(f"methods: unknown method {e.name!r} (choose from {', '.join(METHODS)})")
        kw = e.kwargs
        if e.name == "divqat":
            if "alpha" not in kw:
                raise ValueError("methods divqat: needs alpha (a number or a list)")
            if not kw["alpha"] >= 0:
                raise ValueError(f"methods divqat: alpha must be >= 0, got {kw['alpha']}")
            if kw.get("direction", "forward") not in ("forward", "reverse"):
                raise ValueError(f"methods divqat: direction must be forward or reverse, got {kw['direction']!r}")
        if e.name.startswith("adv-"):
            if "eps" not in kw or not kw["eps"] > 0:
                raise ValueError(f"methods {e.name}: needs eps > 0")


def parse_config(raw, name=None):
    """Validate a config mapping (as read from TOML) and expand its sweeps."""
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"config: unknown top-level keys {sorted(unknown)}")
    data = _require(raw, "data", "config", dict)
    _require(data, "victim", "data", str)
    victim = _require(raw, "victim", "config", dict)
    _require(victim, "arch", "victim", str)
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds: expected a non-empty list of ints, got {seeds!r}")
    method_tables = _require(raw, "methods", "config", list)
    methods = [e for t in method_tables for e in expand(t, "methods")]
    _validate_methods(methods)
    defenses = [e for t in raw.get("defenses", [{"name": "none"}]) for e in expand(t, "defenses")]
    attacks = [e for t in raw.get("attacks", []) for e in expand(t, "attacks")]
    for a in attacks:
        budget = a.kwargs.get("budget")
        if not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"attacks {a.name}: budget must be a positive int, got {budget!r}")
    if attacks and "queryset" not in data and any(a.name not in ("dfme", "maze", "jbda") for a in attacks):
        raise ValueError("data: missing 'queryset' (the attacker's query data set)")
    robustness = raw.get("robustness", {})
    if robustness:
        for key in ("attacks", "eps"):
            _require(robustness, key, "robustness", list)
    return ExperimentConfig(
        name=raw.get("name", name or "experiment"), seeds=seeds, data=dict(data),
        victim=dict(victim), quant=dict(raw.get("quant", {})), methods=methods,
        defenses=defenses, attacks=attacks, robustness=dict(robustness),
        device=raw.get("device", "cpu"), raw=raw)


def load_config(path):
    """Read and validate a TOML experiment config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, "rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config {path}: invalid TOML: {err}") from err
    return parse_config(raw, name=path.stem)
