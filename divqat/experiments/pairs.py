"""The dataset pairs of an experiment file: ``[[pairs]]`` expanded into one config mapping per
pair (:func:`expand_pairs`), the pairs a run takes with their output directories
(:func:`pair_runs`), and one pair's config as a TOML file of its own (:func:`pair_toml`), which
code from before pairs reads too. The file layout is documented in
:mod:`divqat.experiments.config`."""
import json
import re
from pathlib import Path

PAIR_KEYS = {"name", "victim", "queryset", "methods"}
PLACEHOLDER = "{pair}"
_PAIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # also a directory name
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _check_pair(table, index, seen):
    if not isinstance(table, dict):
        raise ValueError(f"pairs: entry {index} is not a table, got {table!r}")
    name = table.get("name")
    if not isinstance(name, str) or not _PAIR_NAME.fullmatch(name):
        raise ValueError(f"pairs: entry {index} needs a name of letters, digits, '.', '_' or '-', got {name!r}")
    if name in seen:
        raise ValueError(f"pairs: duplicate name {name!r}")
    unknown = sorted(set(table) - PAIR_KEYS)
    if unknown:
        raise ValueError(f"pairs {name}: unknown keys {unknown} (allowed: {', '.join(sorted(PAIR_KEYS))})")
    if "victim" not in table:
        raise ValueError(f"pairs {name}: missing required key 'victim'")
    for key in ("victim", "queryset"):
        if key in table and not isinstance(table[key], str):
            raise ValueError(f"pairs {name}.{key}: expected str, got {table[key]!r}")
    return name


def pair_config_name(name, pair):
    """A pair's config name: ``name`` with ``{pair}`` replaced by the pair's name, or
    ``<name>_<pair>`` when it has no placeholder."""
    return name.replace(PLACEHOLDER, pair) if PLACEHOLDER in name else f"{name}_{pair}"


def expand_pairs(raw, name):
    """``[(pair name, config mapping)]`` of a config mapping: one per ``[[pairs]]`` entry, each
    with that pair's ``[data]`` victim and query set, its own name (:func:`pair_config_name`
    of ``raw``'s name, else of ``name``) and, when the entry has ``[[pairs.methods]]``, those
    methods instead of the file's; everything else shared; ``[(None, raw)]`` without pairs."""
    if "pairs" not in raw:
        if PLACEHOLDER in str(raw.get("name", "")):
            raise ValueError(f"name: {raw['name']!r} has the {PLACEHOLDER} placeholder but the config has no [[pairs]]")
        return [(None, raw)]
    tables = raw["pairs"]
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"pairs: expected a non-empty array of tables ([[pairs]]), got {tables!r}")
    data = raw.get("data", {})
    for key in ("victim", "queryset"):
        if isinstance(data, dict) and key in data:
            raise ValueError(f"data.{key}: set by each [[pairs]] entry, not in [data], when the config has pairs")
    base = raw.get("name", name)
    if not isinstance(base, str):
        raise ValueError(f"name: expected str, got {base!r}")
    seen, expanded = set(), []
    for index, table in enumerate(tables):
        pair = _check_pair(table, index, seen)
        seen.add(pair)
        own = {k: table[k] for k in ("victim", "queryset") if k in table}
        pair_data = {**own, **data} if isinstance(data, dict) else data
        pair_raw = {"name": pair_config_name(base, pair)}
        for key, value in raw.items():  # in the file's order, [data] where it is or before [victim]
            if key in ("data", "victim"):
                pair_raw.setdefault("data", pair_data)
            if key not in ("name", "pairs", "data"):
                pair_raw[key] = table.get(key, value) if key == "methods" else value
        pair_raw.setdefault("data", pair_data)
        if "methods" in table:  # the pair's own [[pairs.methods]] replace the file's [[methods]]
            pair_raw.setdefault("methods", table["methods"])
        expanded.append((pair, pair_raw))
    return expanded


def pair_runs(configs, out, pair=None, source="the config"):
    """``[(config, output directory)]`` to run of the configs of one file (``source`` names it):
    with ``pair``, that pair's into ``out``; without, each pair's into ``out/<pair>`` (a file
    without pairs: its config into ``out``). ValueError naming ``--pair`` for a pair the file lacks."""
    out = Path(out)
    names = [c.pair for c in configs if c.pair is not None]
    if pair is None:
        return [(c, out / c.pair if c.pair is not None else out) for c in configs]
    if not names:
        raise ValueError(f"--pair: {source} has no [[pairs]], so no pair {pair!r}")
    if pair not in names:
        raise ValueError(f"--pair: unknown pair {pair!r} (the pairs of {source}: {', '.join(names)})")
    return [(c, out) for c in configs if c.pair == pair]


def _toml_key(key):
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value, where):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # its escapes are TOML's
    if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ValueError(f"{where}: cannot be written as a TOML value: {value!r}")


def _is_table_array(value):
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def pair_toml(raw):
    """The TOML text of a config mapping of one pair (a config's ``raw``): its keys, then its
    tables and arrays of tables in order; :func:`tomllib.loads` gives ``raw`` back."""
    lines = [f"{_toml_key(k)} = {_toml_value(v, k)}" for k, v in raw.items()
             if not isinstance(v, dict) and not _is_table_array(v)]
    for key, value in raw.items():
        tables = [(f"[{_toml_key(key)}]", value)] if isinstance(value, dict) else (
            [(f"[[{_toml_key(key)}]]", t) for t in value] if _is_table_array(value) else [])
        for header, table in tables:
            lines += ["", header] + [f"{_toml_key(k)} = {_toml_value(v, f'{key}.{k}')}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
