"""The cells of an experiment grid and their on-disk cache.

A *victim cell* is one trained victim (method and its parameters, seed, data and training
options); an *attack cell* is one victim behind one defense, attacked by one attack at one
budget. A *misinformation cell* is the misinformation model of adaptive misinformation
(Kariyappa and Qureshi, CVPR 2020; :mod:`divqat.defenses.misinformation`) that the attack cells
of one seed with that defense answer through: the victim's architecture trained on the victim's
training data (same ``train_limit``, never the attacker's query set) by
:func:`~divqat.defenses.misinformation.train_misinformation_model` with its documented defaults
and the victim's seed, shared by every victim of that seed. Each cell is keyed by a hash of its
full configuration (canonical JSON, SHA-256) and of the code that computes it
(:func:`divqat.experiments.fingerprint.code_fingerprint`), so a changed option or changed code
gives a new cell, and an unchanged one is found again after an interruption. A cell's
``config_key`` hashes the configuration alone (specs name their teacher and victim by it);
records computed by other code keep the same ``config_key``, and :meth:`CellCache.adopt_stale`
lets a run reuse them knowingly (``--reuse-stale``)::

    OUT/victims/<name>-<key>/victim.json   the victim's record (written last: the "done" marker)
    OUT/victims/<name>-<key>/...           its checkpoint, written by the pipeline
    OUT/cells/<key>.json                   an attack cell's record
    OUT/misinformation/seed<N>-<key>/misinformation.json   a misinformation model's record (last)
    OUT/misinformation/seed<N>-<key>/...                   its `divqat train --out` style run

A victim's folder starts with a readable name (:func:`victim_name`, e.g.
``divqat-alpha-1.0-seed0-<key>``); it is found by its key alone, so the bare ``<key>`` folders
of caches written before these names are found too.

Records are written atomically (temporary file + os.replace), so a killed run leaves either a
finished record or none. Each record carries its ``config_key`` and ``code``; a reader
(:func:`CellCache.victim_records`, ``attack_records``) keeps one record per ``config_key``, the
one computed by the running code when there is one, and marks the adopted ones ``stale``.
"""
import hashlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

from divqat.defenses.misinformation import AdaptiveMisinformation, train_misinformation_model
from divqat.defenses.registry import resolve_name
from divqat.utils import atomic_write_json, read_json

from . import fingerprint
from .config import QUANTIZED_METHODS, TEACHER_METHODS, Entry


def cell_key(spec):
    """First 16 hex digits of SHA-256 over the canonical JSON of ``spec``."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def current_code():
    """The fingerprint of the running code (:func:`divqat.experiments.fingerprint.code_fingerprint`)."""
    return fingerprint.code_fingerprint()


class _Keyed:
    @property
    def config_key(self):
        """Hash of the configuration alone."""
        return cell_key(self.spec)

    @property
    def key(self):
        """Hash of the configuration and of the code that computes the cell."""
        return cell_key({"spec": self.spec, "code": self.code})


@dataclass(frozen=True)
class VictimCell(_Keyed):
    method: Entry
    seed: int
    spec: dict
    teacher: "VictimCell | None" = None
    code: str = ""


@dataclass(frozen=True)
class MisinformationCell(_Keyed):
    seed: int
    spec: dict
    code: str = ""


@dataclass(frozen=True)
class AttackCell(_Keyed):
    victim: VictimCell
    defense: Entry
    attack: Entry
    spec: dict
    code: str = ""
    misinformation: "MisinformationCell | None" = None  # the model its defense answers through


#: the options of :func:`train_misinformation_model` a misinformation cell is trained with (its
#: documented defaults) and keyed by
MISINFORMATION_OPTIONS = ("epochs", "batch_size", "lr", "optimizer")


def uses_misinformation(defense):
    """Whether the defense entry is adaptive misinformation (any spelling or alias)."""
    return defense.name != "none" and resolve_name(defense.name) == AdaptiveMisinformation.NAME


def misinformation_cell(config, seed):
    """The misinformation model of ``seed``'s attack cells (module docstring), or None when no
    defense of ``config`` is adaptive misinformation."""
    if not any(uses_misinformation(d) for d in config.defenses):
        return None
    defaults = inspect.signature(train_misinformation_model).parameters
    spec = {"data": {k: config.data[k] for k in ("victim", "train_limit") if k in config.data},
            "arch": config.victim["arch"], "seed": seed,
            "training": {k: defaults[k].default for k in MISINFORMATION_OPTIONS}}
    return MisinformationCell(seed, spec, current_code())


#: the cells with a folder of their own: kind -> (folder under OUT, record file written last)
FOLDER_CELLS = {"victim": ("victims", "victim.json"), "misinformation": ("misinformation", "misinformation.json")}


def misinformation_name(cell):
    """The readable start of a misinformation model's folder name (``seed0``)."""
    return f"seed{cell.seed}"


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
    code = current_code()
    base = {"data": _data_spec(config), "victim": config.victim, "seed": seed}
    fp = VictimCell(Entry("fp"), seed, {**base, "method": {"name": "fp"}}, code=code)
    cells = [fp]
    for method in config.methods:
        if method.name == "fp":
            continue
        spec = {**base, "method": method.as_dict()}
        if method.name in QUANTIZED_METHODS:
            spec["quant"] = config.quant
        teacher = fp if method.name in TEACHER_METHODS else None
        if teacher is not None:
            spec["teacher"] = fp.config_key
        cells.append(VictimCell(method, seed, spec, teacher, code))
    return cells


def attacked_victims(config, seed):
    """The victims of one seed that the attacks target (fp only when listed in methods)."""
    listed = {m.name for m in config.methods}
    cells = victim_cells(config, seed)
    return cells if "fp" in listed else cells[1:]


def attack_cells(config, victim):
    """All (defense, attack, budget) cells of one victim; those with adaptive misinformation
    name their misinformation cell (and are keyed by it)."""
    common = {k: config.data[k] for k in ("queryset", "test_limit") if k in config.data}
    cells = []
    # largest budget first: smaller budgets then reuse its cached transfer set
    attacks = sorted(config.attacks, key=lambda a: -a.kwargs["budget"])
    misinformation = misinformation_cell(config, victim.seed)
    for defense in config.defenses:
        mis = misinformation if uses_misinformation(defense) else None
        for attack in attacks:
            spec = {"victim": victim.config_key, "defense": defense.as_dict(), "attack": attack.as_dict(),
                    "data": common, "robustness": config.robustness, "seed": victim.seed}
            if mis is not None:
                spec["misinformation"] = mis.config_key
            cells.append(AttackCell(victim, defense, attack, spec, victim.code, mis))
    return cells


def grid_cells(config):
    """Every victim cell, misinformation cell and attack cell of ``config``, seed by seed."""
    for seed in config.seeds:
        yield from victim_cells(config, seed)
        misinformation = misinformation_cell(config, seed)
        if misinformation is not None:
            yield misinformation
        for victim in attacked_victims(config, seed):
            yield from attack_cells(config, victim)


def _config_key(record):
    """A record's configuration key (records from before code fingerprints: their key)."""
    return record.get("config_key", record["key"])


class CellCache:
    """Finished cells of one output directory (see the module docstring for the layout)."""

    def __init__(self, out_dir, create=True):
        """``create=False``: only read; a directory that does not exist is an empty cache."""
        self.root = Path(out_dir)
        if create:
            (self.root / "cells").mkdir(parents=True, exist_ok=True)
            (self.root / "victims").mkdir(parents=True, exist_ok=True)

    def _folder(self, kind, key):
        """The folder of cell ``key`` under ``OUT/<kind>`` (``<name>-<key>``, or ``<key>`` in older
        caches), or None."""
        bare = self.root / kind / key
        if bare.exists():
            return bare
        return next(iter(sorted((self.root / kind).glob(f"*-{key}"))), None)

    def _make_folder(self, kind, key, name):
        """The folder of cell ``key`` under ``OUT/<kind>``, created as ``<name>-<key>`` if it has none."""
        path = self._folder(kind, key)
        if path is None:
            path = self.root / kind / (f"{name}-{key}" if name else key)
            path.mkdir(parents=True, exist_ok=True)
        return path

    def victim_dir(self, key, name=None):
        """The folder of victim ``key``, created as ``victims/<name>-<key>`` if it has none."""
        return self._make_folder("victims", key, name)

    def misinformation_dir(self, key, name=None):
        """The folder of misinformation model ``key``, created as ``misinformation/<name>-<key>``
        if it has none."""
        return self._make_folder("misinformation", key, name)

    def misinformation_record(self, key):
        return self._folder_record("misinformation", key)

    def save_misinformation_record(self, key, record):
        self._save("misinformation", key, record)

    @staticmethod
    def _read(path):
        if not path.is_file():
            return None
        return read_json(path, "cell record")

    @staticmethod
    def _stamp(key, record):
        """``record`` with its ``config_key`` (of its ``spec``; ``key`` without one) and ``code``."""
        config_key = cell_key(record["spec"]) if "spec" in record else key
        return {**record, "config_key": config_key, "code": current_code()}

    def record_path(self, kind, key, name=None):
        """Where the record of cell ``key`` of ``kind`` (``victim``, ``misinformation``,
        ``attack``) is written; a folder cell's folder is created as ``<name>-<key>`` if it has none."""
        if kind == "attack":
            return self.root / "cells" / f"{key}.json"
        folder, filename = FOLDER_CELLS[kind]
        return self._make_folder(folder, key, name) / filename

    def _folder_record(self, kind, key):
        folder, filename = FOLDER_CELLS[kind]
        path = self._folder(folder, key)
        return None if path is None else self._read(path / filename)

    def _save(self, kind, key, record):
        atomic_write_json(self._stamp(key, record), self.record_path(kind, key))

    def victim_record(self, key):
        return self._folder_record("victim", key)

    def save_victim_record(self, key, record):
        self._save("victim", key, record)

    def attack_record(self, key):
        return self._read(self.record_path("attack", key))

    def save_attack_record(self, key, record):
        self._save("attack", key, record)

    def record(self, cell):
        """The cached record of ``cell`` (a victim, misinformation or attack cell), or None."""
        kind = cell_kind(cell)
        return self.attack_record(cell.key) if kind == "attack" else self._folder_record(kind, cell.key)

    def _paths(self, kind):
        """The record files of ``kind`` (``victim``, ``misinformation``, ``attack``), every code's;
        an adopted cell's link is listed beside the record it leads to."""
        if kind == "attack":
            return sorted((self.root / "cells").glob("*.json"))
        folder, filename = FOLDER_CELLS[kind]
        return sorted((self.root / folder).glob(f"*/{filename}"))

    def all_records(self, kind):
        """Every record of ``kind`` on disk, whatever code computed it, each once (links to a
        record are not counted again)."""
        files = {path.resolve(): path for path in self._paths(kind)}
        return [self._read(path) for path in files.values()]

    def config_keys(self, kind):
        """The configuration keys of every record of ``kind`` on disk, whatever code computed it."""
        return {_config_key(record) for record in self.all_records(kind)}

    def _current(self, paths, adopted):
        """One record per config key, marked ``stale`` when it was adopted with
        :meth:`adopt_stale` (``adopted(path)``: reached through a link). Among several records
        of one configuration the running code's wins, then an adopted one (a run chose it), then
        the newest."""
        code, ranked = current_code(), {}
        for path in paths:
            record = {**self._read(path), "stale": adopted(path)}
            rank = (record.get("code") == code, record["stale"], path.stat().st_mtime)
            ck = _config_key(record)
            if ck not in ranked or rank > ranked[ck][0]:
                ranked[ck] = (rank, record)
        return [record for _, record in ranked.values()]

    def victim_records(self):
        return self._current(self._paths("victim"), lambda p: p.parent.is_symlink())

    def attack_records(self):
        return self._current(self._paths("attack"), lambda p: p.is_symlink())

    def adopt_stale(self, cells):
        """Reuse, for each of ``cells`` without a record of its own, a record of the same
        configuration computed by other code: link the cell's key to it (a symlink to the folder of
        a victim or misinformation model, to the record of an attack cell; the records keep their
        ``code``; readers mark them stale). Returns the number of cells adopted."""
        found = {kind: {_config_key(self._read(p)): p.name if kind == "attack" else p.parent.name
                        for p in self._paths(kind)} for kind in _KINDS.values()}
        adopted = 0
        for cell in cells:
            kind = cell_kind(cell)
            old = found.get(kind, {}).get(cell.config_key)
            if kind == "attack":
                link = self.root / "cells" / f"{cell.key}.json"
            else:
                link = self.root / FOLDER_CELLS[kind][0] / cell.key
            if old is None or self.record(cell) is not None or link.exists() or link.is_symlink():
                continue
            link.symlink_to(old)
            adopted += 1
        return adopted


_KINDS = {VictimCell: "victim", MisinformationCell: "misinformation", AttackCell: "attack"}


def cell_kind(cell):
    """``"victim"``, ``"misinformation"`` or ``"attack"``: the kind of a grid cell (as its job's)."""
    return _KINDS[type(cell)]
