"""The cells of an experiment grid and their on-disk cache.

A *victim cell* is one trained victim (method and its parameters, seed, data and training
options); an *attack cell* is one victim behind one defense, attacked by one attack at one
budget. Each cell is keyed by a hash of its full configuration (canonical JSON, SHA-256), so a
changed option gives a new cell, and an unchanged one is found again after an interruption::

    OUT/victims/<name>-<key>/victim.json   the victim's record (written last: the "done" marker)
    OUT/victims/<name>-<key>/...           its checkpoint, written by the pipeline
    OUT/cells/<key>.json                   an attack cell's record

A victim's folder starts with a readable name (:func:`victim_name`, e.g.
``divqat-alpha-1.0-seed0-<key>``); it is found by its key alone, so the bare ``<key>`` folders
of caches written before these names are found too.

Records are written atomically (temporary file + os.replace), so a killed run leaves either a
finished record or none.
"""
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from divqat.utils import atomic_write_json, read_json

from .config import TEACHER_METHODS, QUANTIZED_METHODS, Entry


def cell_key(spec):
    """First 16 hex digits of SHA-256 over the canonical JSON of ``spec``."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class VictimCell:
    method: Entry
    seed: int
    spec: dict
    teacher: "VictimCell | None" = None

    @property
    def key(self):
        return cell_key(self.spec)


@dataclass(frozen=True)
class AttackCell:
    victim: VictimCell
    defense: Entry
    attack: Entry
    spec: dict

    @property
    def key(self):
        return cell_key(self.spec)


def victim_name(cell):
    """The readable start of a victim's folder name: method label and seed (``qat-seed0``)."""
    label = re.sub(r"[^A-Za-z0-9.]+", "-", cell.method.label).strip("-")[:60]
    return f"{label}-seed{cell.seed}"


def _data_spec(config):
    keys = ("victim", "train_limit", "test_limit")
    return {k: config.data[k] for k in keys if k in config.data}


def victim_cells(config, seed):
    """The victims of one seed: the full-precision victim first (it is the teacher of the
    ptq/qat/divqat victims), then one per expanded method entry (``fp`` reuses the first)."""
    base = {"data": _data_spec(config), "victim": config.victim, "seed": seed}
    fp = VictimCell(Entry("fp"), seed, {**base, "method": {"name": "fp"}})
    cells = [fp]
    for method in config.methods:
        if method.name == "fp":
            continue
        spec = {**base, "method": method.as_dict()}
        if method.name in QUANTIZED_METHODS:
            spec["quant"] = config.quant
        teacher = fp if method.name in TEACHER_METHODS else None
        if teacher is not None:
            spec["teacher"] = fp.key
        cells.append(VictimCell(method, seed, spec, teacher))
    return cells


def attacked_victims(config, seed):
    """The victims of one seed that the attacks target (fp only when listed in methods)."""
    listed = {m.name for m in config.methods}
    cells = victim_cells(config, seed)
    return cells if "fp" in listed else cells[1:]


def attack_cells(config, victim):
    """All (defense, attack, budget) cells of one victim."""
    common = {k: config.data[k] for k in ("queryset", "query_limit", "test_limit") if k in config.data}
    cells = []
    # largest budget first: smaller budgets then reuse its cached transfer set
    attacks = sorted(config.attacks, key=lambda a: -a.kwargs["budget"])
    for defense in config.defenses:
        for attack in attacks:
            spec = {"victim": victim.key, "defense": defense.as_dict(), "attack": attack.as_dict(),
                    "data": common, "robustness": config.robustness, "seed": victim.seed}
            cells.append(AttackCell(victim, defense, attack, spec))
    return cells


class CellCache:
    """Finished cells of one output directory (see the module docstring for the layout)."""

    def __init__(self, out_dir):
        self.root = Path(out_dir)
        (self.root / "cells").mkdir(parents=True, exist_ok=True)
        (self.root / "victims").mkdir(parents=True, exist_ok=True)

    def _victim_path(self, key):
        """The folder of victim ``key`` (``<name>-<key>``, or ``<key>`` in older caches), or None."""
        bare = self.root / "victims" / key
        if bare.exists():
            return bare
        return next(iter(sorted((self.root / "victims").glob(f"*-{key}"))), None)

    def victim_dir(self, key, name=None):
        """The folder of victim ``key``, created as ``victims/<name>-<key>`` if it has none."""
        path = self._victim_path(key)
        if path is None:
            path = self.root / "victims" / (f"{name}-{key}" if name else key)
            path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _read(path):
        if not path.is_file():
            return None
        return read_json(path, "cell record")

    def victim_record(self, key):
        path = self._victim_path(key)
        return None if path is None else self._read(path / "victim.json")

    def save_victim_record(self, key, record):
        atomic_write_json(record, self.victim_dir(key) / "victim.json")

    def attack_record(self, key):
        return self._read(self.root / "cells" / f"{key}.json")

    def save_attack_record(self, key, record):
        atomic_write_json(record, self.root / "cells" / f"{key}.json")

    def victim_records(self):
        return [self._read(p) for p in sorted((self.root / "victims").glob("*/victim.json"))]

    def attack_records(self):
        return [self._read(p) for p in sorted((self.root / "cells").glob("*.json"))]
