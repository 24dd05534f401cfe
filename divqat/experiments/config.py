"""An experiment configuration (TOML) and its expansion into a grid.

Layout of a config file (every list-valued parameter is swept, scalars are fixed)::

    name = "mnist-fmnist"
    seeds = [0, 1, 2]
    device = "cpu"              # training and attacks (auto | cpu | cuda | cuda:N)

    [data]                      # victim's dataset, the attacker's query set, optional limits
                                # (the attack's budget is what bounds the queries drawn)
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

    [[defenses]]                # adaptive misinformation: the runner trains its model itself, once
    name = "am"                 # per seed, on the victim's training data (divqat.experiments.cells)
    tau = [0.5, 0.9]

    [[attacks]]                 # a divqat.attacks name, the budgets, its parameters (surrogate
    name = "knockoff"           # TrainConfig fields such as epochs or momentum go to train=)
    budget = [1000, 5000]
    epochs = 10

    [robustness]                # optional (docs/science.md §7): accuracy under attack of victims
    attacks = ["fgsm", "pgd"]   # and surrogates
    eps = [0.0, 0.03, 0.1]
    limit = 500

A file may instead run its grid on several dataset pairs, everything else shared: each
``[[pairs]]`` entry gives a pair's name and its ``[data]`` victim and query set (which
``[data]`` then leaves out), and the file expands to one config per pair
(:func:`load_experiment_configs`; :mod:`divqat.experiments.pairs`), named by ``name`` with
``{pair}`` replaced by the pair's name (``<name>_<pair>`` without the placeholder)::

    name = "frontier_{pair}_cpu_core"      # frontier_mnist_fmnist_cpu_core, frontier_fmnist_mnist_cpu_core

    [[pairs]]
    name = "mnist_fmnist"
    victim = "mnist"
    queryset = "fashion-mnist"

    [[pairs]]
    name = "fmnist_mnist"
    victim = "fashion-mnist"
    queryset = "mnist"

A pair may train its own victims: its ``[[pairs.methods]]`` (after that pair's entry) replace
the file's ``[[methods]]`` for that pair alone, e.g. a hyperparameter chosen per victim data set.
A pair's config is the one a file with its ``name``, ``[data]`` and methods would give, so its
cells keep their keys. ``divqat experiment FILE --pair NAME`` runs one pair; without ``--pair`` each pair
runs into ``OUT/<pair name>``.

A *method*, *defense* or *attack* entry with list values expands into the Cartesian product of
its lists (:func:`expand`). Cells of the grid are built in :mod:`divqat.experiments.cells`.
An unknown key in any table is an error, and every victim's training options are checked
(:func:`divqat.train.victim.check_config`) when the file is read, before anything is trained;
defense and attack parameters are checked by the pipeline before its first cell.
"""
import dataclasses
import itertools
import tomllib  # python_requires >= 3.11 (setup.py): the only version CI proves
from dataclasses import dataclass, field
from pathlib import Path

from divqat.checks import check_choice, check_int
from divqat.robustness import EVASION_ATTACKS
from divqat.train.artifacts import KINDS
from divqat.train.options import DEFAULTS, FIELDS, reads
from divqat.train.victim import METHODS, QUANTIZED_METHODS, VictimConfig, check_config

from .pairs import expand_pairs, pair_runs

TEACHER_METHODS = QUANTIZED_METHODS  # built from the trained full-precision victim
TOP_KEYS = {"name", "seeds", "device", "data", "victim", "quant", "methods", "defenses",
            "attacks", "robustness", "pairs"}
DATA_KEYS = {"victim", "queryset", "train_limit", "test_limit"}
ROBUSTNESS_KEYS = {"attacks", "eps", "limit"}
# VictimConfig fields the experiment sets itself (from [data], seeds, device and the cell)
SET_BY_EXPERIMENT = {"dataset", "method", "limit", "test_limit", "seed", "out", "teacher", "device", "resume",
                     "no_progress"}
TRAIN_OPTIONS = {f.name for f in dataclasses.fields(VictimConfig)} - SET_BY_EXPERIMENT


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
    pair: str | None = None  # the [[pairs]] entry it was expanded from


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


def _check_keys(table, allowed, where):
    unknown = set(table) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _check_train_table(table, where, extra=()):
    """ValueError for a key of a [victim]/[quant]/[[methods]] table that is no `divqat train`
    option, or one the experiment sets itself."""
    fixed = sorted(set(table) & SET_BY_EXPERIMENT)
    if fixed:
        raise ValueError(f"{where}: {', '.join(fixed)} is set by the experiment ([data], seeds, device), not here")
    unknown = sorted(set(table) - TRAIN_OPTIONS - set(extra))
    if unknown:
        raise ValueError(f"{where}: options unknown to `divqat train`: {', '.join(unknown)}")


def _shared_options(config, method):
    """The options [victim] and, for a quantized method, [quant] give ``method`` (an Entry)."""
    options = {k: v for k, v in config.victim.items() if k != "deploy"}
    if method.name in QUANTIZED_METHODS:
        options.update(config.quant)
    return options


def _objective(config, method):
    return method.kwargs.get("objective", _shared_options(config, method).get("objective", DEFAULTS.objective))


def victim_config(config, method, seed, out, teacher=None, progress=True):
    """The :class:`divqat.train.VictimConfig` of one victim of ``config``: of [victim], then
    [quant] for quantized methods, the options this method reads (the tables are shared by
    every victim), then the method entry's parameters."""
    objective = _objective(config, method)
    options = {k: v for k, v in _shared_options(config, method).items()
               if k not in FIELDS or reads(k, method.name, objective)}
    options.update(method.kwargs)
    options.update(dataset=config.data["victim"], method=method.name, limit=config.data.get("train_limit"),
                   test_limit=config.data.get("test_limit"), seed=seed, out=out, teacher=teacher,
                   device=config.device, resume=True, no_progress=not progress)
    return VictimConfig.from_options(options, where=f"config methods {method.label}")


def _validate_methods(config):
    """Every victim's training options, checked as `divqat train` checks them."""
    for e in config.methods:
        if e.name not in METHODS:
            raise ValueError(f"methods: unknown method {e.name!r} (choose from {', '.join(METHODS)})")
        _check_train_table(e.kwargs, f"methods {e.name}")
        if e.name == "divqat" and "alpha" not in e.kwargs:
            raise ValueError("methods divqat: needs alpha (a number or a list)")
    victims = [Entry("fp")] + config.methods
    for method in victims:
        teacher = "teacher" if method.name in QUANTIZED_METHODS else None
        try:
            check_config(victim_config(config, method, config.seeds[0], "out", teacher))
        except ValueError as err:
            raise ValueError(f"methods {method.label}: {err}") from None
    for table, options in (("victim", config.victim), ("quant", config.quant)):
        for key in sorted(set(options) & set(FIELDS)):
            users = [m for m in victims if table == "victim" or m.name in QUANTIZED_METHODS]
            if not any(reads(key, m.name, _objective(config, m)) for m in users):
                raise ValueError(f"{table}.{key}: no victim of this experiment reads it (methods: "
                                 f"{', '.join(m.label for m in users) or 'none'})")


def _validate_robustness(robustness):
    _check_keys(robustness, ROBUSTNESS_KEYS, "robustness")
    for key in ("attacks", "eps"):
        _require(robustness, key, "robustness", list)
    unknown = [a for a in robustness["attacks"] if a not in EVASION_ATTACKS]
    if unknown:
        raise ValueError(f"robustness.attacks: unknown {unknown} (choose from {', '.join(EVASION_ATTACKS)})")
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 <= e <= 1 for e in robustness["eps"]):
        raise ValueError(f"robustness.eps: expected numbers in [0, 1], got {robustness['eps']!r}")


def parse_configs(raw, name=None):
    """Validate a config mapping (as read from TOML) and expand its pairs and sweeps: one
    :class:`ExperimentConfig` per ``[[pairs]]`` entry, or one."""
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"config: unknown top-level keys {sorted(unknown)}")
    configs = []
    for pair, pair_raw in expand_pairs(raw, name or "experiment"):
        try:
            configs.append(dataclasses.replace(parse_config(pair_raw, name), pair=pair))
        except ValueError as err:
            raise ValueError(f"pairs {pair}: {err}" if pair is not None else str(err)) from None
    return configs


def parse_config(raw, name=None):
    """Validate a config mapping of one dataset pair (as read from TOML) and expand its sweeps."""
    if "pairs" in raw:
        raise ValueError("pairs: a config with [[pairs]] gives one config per pair (parse_configs)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"config: unknown top-level keys {sorted(unknown)}")
    data = _require(raw, "data", "config", dict)
    _check_keys(data, DATA_KEYS, "data")
    _require(data, "victim", "data", str)
    victim = _require(raw, "victim", "config", dict)
    _require(victim, "arch", "victim", str)
    _check_train_table(victim, "victim", extra=("deploy",))
    check_choice("victim.deploy", victim.get("deploy", "auto"), KINDS)
    quant = raw.get("quant", {})
    if not isinstance(quant, dict):
        raise ValueError(f"config.quant: expected a table, got {quant!r}")
    _check_train_table(quant, "quant")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds: expected a non-empty list of ints, got {seeds!r}")
    if not isinstance(raw.get("device", "cpu"), str):
        raise ValueError(f"device: expected a string (auto, cpu, cuda or cuda:N), got {raw['device']!r}")
    method_tables = _require(raw, "methods", "config", list)
    methods = [e for t in method_tables for e in expand(t, "methods")]
    if not methods:
        raise ValueError("methods: the config trains no method (add a [[methods]] table, e.g. name = \"qat\")")
    defenses = [e for t in raw.get("defenses", [{"name": "none"}]) for e in expand(t, "defenses")]
    for d in defenses:
        if d.name == "none" and d.params:
            raise ValueError(f"defenses none: answers unperturbed and takes no parameters, got {', '.join(d.kwargs)}")
    attacks = [e for t in raw.get("attacks", []) for e in expand(t, "attacks")]
    for a in attacks:
        check_int(f"attacks {a.name}: budget", a.kwargs.get("budget"), 1)
    if attacks and "queryset" not in data and any(a.name not in ("dfme", "maze", "jbda") for a in attacks):
        raise ValueError("data: missing 'queryset' (the attacker's query data set)")
    robustness = raw.get("robustness", {})
    if robustness:
        _validate_robustness(robustness)
    config = ExperimentConfig(
        name=raw.get("name", name or "experiment"), seeds=seeds, data=dict(data),
        victim=dict(victim), quant=dict(quant), methods=methods,
        defenses=defenses, attacks=attacks, robustness=dict(robustness),
        device=raw.get("device", "cpu"), raw=raw)
    _validate_methods(config)
    return config


def load_experiment_configs(path):
    """Read and validate a TOML experiment config: its configs, one per ``[[pairs]]`` entry, or one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, "rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config {path}: invalid TOML: {err}") from err
    return parse_configs(raw, name=path.stem)


def load_experiment_config(path, pair=None):
    """The config of ``pair`` of a TOML experiment file (its only config when it has no pairs);
    ValueError naming ``--pair`` when the file has pairs and ``pair`` is none of them."""
    configs = load_experiment_configs(path)
    if pair is None and configs[0].pair is not None:
        names = ", ".join(c.pair for c in configs)
        raise ValueError(f"--pair: {path} holds the pairs {names}: name one")
    return pair_runs(configs, ".", pair, source=path)[0][0]
