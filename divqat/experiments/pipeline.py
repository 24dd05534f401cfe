"""The library pipeline the experiment runner drives (docs/design.md, data flow):

    dataset -> train f_fp -> ptq | QAT | DivQAT | adversarial training -> convert to int8
            -> BlackBox(victim, defense, budget) -> attack -> surrogate -> metrics

- Victims are trained by :func:`divqat.train.train_victim` (the function behind ``divqat
  train``: the same code and output directory as on the command line, resumed from its
  checkpoint after an interruption), from a :class:`divqat.train.VictimConfig` made of the
  ``[victim]``/``[quant]``/method tables of the experiment config, and loaded back with
  :func:`divqat.train.load_victim` (``kind="auto"``: the converted int8 model for quantized
  methods, which is what an edge deployment answers queries with).
- Each attack cell deploys the victim behind a :class:`divqat.blackbox.BlackBox` with the
  cell's defense (:func:`divqat.defenses.build_defense`; MAD's defender surrogate defaults to
  a randomly initialised model of the victim's architecture, as in Orekondy et al., ICLR 2020;
  adaptive misinformation answers through the misinformation model the runner trained for the
  seed with :meth:`LibraryPipeline.train_misinformation`, Kariyappa and Qureshi, CVPR 2020)
  and budget, runs the attack (:data:`divqat.attacks.ATTACKS`), and scores the surrogate with
  :func:`divqat.metrics.evaluate_surrogate` on the victim's test set (docs/science.md §6; the
  mixed thief on the part of it it does not query, :meth:`LibraryPipeline.scoring_set`), and
  keeps the histogram of the labels the thief was answered (``answered_hist``). A
  defense's cost (accuracy under it, mean L1/KL between clean and returned vectors, latency)
  comes from :func:`divqat.defenses.cost.defense_cost`.
- With a ``[robustness]`` table, accuracy under FGSM/PGD (:mod:`divqat.robustness`) is
  measured for every victim (int8 victims against examples crafted on their fake-quantized
  model) and for every surrogate (white box): docs/science.md §7's inherited robustness.
"""
from pathlib import Path

from divqat.data import load_dataset
from divqat.utils import read_json, resolve_device

from .cells import AttackCell, uses_misinformation, victim_cells
from .config import QUANTIZED_METHODS, victim_config


class LibraryPipeline:
    """Train, load and attack victims with divqat's own functions (see the module docstring)."""

    def __init__(self, config, progress=True):
        from divqat.models import build_model_for

        self.config, self.progress = config, progress
        self._test_set = None
        # fail fast, before any training (the victims' options were checked by parse_config):
        # the architecture on the data, every defense's and attack's parameters (adaptive
        # misinformation's with a stand-in for the misinformation model trained later)
        like_victim = build_model_for(config.victim["arch"], config.data["victim"])
        first = victim_cells(config, config.seeds[0])[0]
        for entry in config.defenses:
            self.build_defense(AttackCell(first, entry, None, {}), like_victim, misinformation=like_victim)
        for entry in config.attacks:
            self.attack_call(entry)

    # ---- victims -------------------------------------------------------------------------
    def train_victim(self, cell, teacher_dir, out_dir):
        """Train the cell's victim into ``out_dir`` with :func:`divqat.train.train_victim`,
        resuming an interrupted run there (the directory is the cell's own, keyed by its
        configuration, so a finished run without the runner's record is trained again)."""
        from divqat.train import train_victim

        config = victim_config(self.config, cell.method, cell.seed, str(out_dir),
                               str(teacher_dir) if teacher_dir else None, self.progress)
        metrics = train_victim(config, overwrite=True)
        return self.load_victim(cell, out_dir), metrics

    def load_victim(self, cell, out_dir):
        from divqat.train import load_victim

        kind = self.config.victim.get("deploy", "auto")
        return load_victim(out_dir, kind=kind)

    # ---- data ----------------------------------------------------------------------------
    @property
    def test_set(self):
        """The victim's test set (first ``data.test_limit`` examples)."""
        if self._test_set is None:
            self._test_set = load_dataset(self.config.data["victim"], "test", limit=self.config.data.get("test_limit"))
        return self._test_set

    def robust_set(self):
        from torch.utils.data import Subset

        limit = self.config.robustness.get("limit")
        data = self.test_set
        return Subset(data, range(min(limit, len(data)))) if limit else data

    def robustness(self, model, source=None, prefix="robust"):
        """{f"{prefix}_{attack}_{eps}": accuracy} for the configured attacks and eps list."""
        from divqat.robustness import robust_accuracy

        r = self.config.robustness
        out = {}
        for attack in r.get("attacks", ()):
            acc = robust_accuracy(model, self.robust_set(), attack, r["eps"], source_model=source,
                                  progress=self.progress, **({"step_size": None} if attack == "pgd" else {}))
            out.update({f"{prefix}_{attack}_{eps:g}": a for eps, a in acc.items()})
        return out

    def evaluate_victim(self, cell, out_dir, metrics):
        """Victim metrics the config asks for that ``metrics`` (its record) lacks: accuracy under
        FGSM/PGD with a ``[robustness]`` table (int8 victims against examples crafted on their
        fake-quantized model, which has gradients). Kept out of the victim's key, so adding a
        robustness table to a config evaluates cached victims without retraining them."""
        r = self.config.robustness
        if not r:
            return {}
        wanted = [f"robust_{a}_{e:g}" for a in r["attacks"] for e in map(float, r["eps"])]
        if metrics.get("robust_limit") == r.get("limit") and all(k in metrics for k in wanted):
            return {}
        from divqat.train import load_victim

        model = self.load_victim(cell, out_dir)
        source = load_victim(out_dir, kind="fake_quant") if cell.method.name in QUANTIZED_METHODS else None
        return {**self.robustness(model, source), "robust_limit": r.get("limit")}

    # ---- defenses ------------------------------------------------------------------------
    def train_misinformation(self, cell, out_dir):
        """Train the misinformation model of a :class:`~divqat.experiments.cells.MisinformationCell`
        into ``out_dir``: the victim's architecture on the victim's training set (first
        ``data.train_limit`` examples), :func:`divqat.defenses.misinformation.train_misinformation_model`
        with the cell's options and seed; returns its metrics (final ``train_loss``)."""
        from divqat.defenses.misinformation import train_misinformation_model
        from divqat.models import build_model_for

        dataset = cell.spec["data"]["victim"]
        model = build_model_for(cell.spec["arch"], dataset)
        train_set = load_dataset(dataset, "train", limit=cell.spec["data"].get("train_limit"))
        train_misinformation_model(model, train_set, seed=cell.seed, device=resolve_device(self.config.device),
                                   progress=self.progress, out_dir=out_dir, dataset=dataset, **cell.spec["training"])
        return read_json(Path(out_dir) / "metrics.json", "misinformation metrics")

    def build_defense(self, cell, victim_dir, misinformation=None):
        """The cell's defense; MAD's defender surrogate defaults to a random model of the victim's
        architecture drawn from the victim's seed; adaptive misinformation answers through the
        model ``misinformation`` (its run directory, which the runner trains, or a model)."""
        from divqat.defenses import build_defense

        if cell.defense.name == "none":
            return None
        kwargs = cell.defense.kwargs
        if uses_misinformation(cell.defense):
            given = sorted(set(kwargs) & {"model", "misinformation_model"})
            if given:
                raise ValueError(f"defenses {cell.defense.name}: {given[0]} is not an option of an experiment: "
                                 "the runner trains the misinformation model on the victim's training data")
            kwargs = {**kwargs, "misinformation_model": misinformation}
        return build_defense(cell.defense.name, victim=victim_dir, victim_seed=cell.victim.seed, **kwargs)

    # ---- attacks -------------------------------------------------------------------------
    def attack_call(self, entry, cache_dir=None):
        """An attack entry's function and keyword arguments (:func:`divqat.attacks.attack_call`):
        the entry's options, the config's query set for the attacks that take one, its device,
        and ``cache_dir`` for the attacks whose answers a transfer-set cache can keep."""
        from divqat.attacks import attack_call, attack_spec

        spec = attack_spec(entry.name)
        options = {k: v for k, v in entry.kwargs.items() if k != "budget"}
        return attack_call(entry.name, options, queryset=None if spec.data_free else self.config.data["queryset"],
                           device=str(resolve_device(self.config.device)), progress=self.progress,
                           cache_dir=cache_dir if spec.cached else None, victim_data=self.config.data["victim"])

    def scoring_set(self, entry):
        """The test images that score an attack entry: the victim's test set, or its first
        :func:`divqat.attacks.registry.scoring_limit` images for an attack that draws queries from the rest."""
        from torch.utils.data import Subset

        from divqat.attacks.registry import scoring_limit

        limit = scoring_limit(entry.name, entry.kwargs)
        return self.test_set if limit is None else Subset(self.test_set, range(min(limit, len(self.test_set))))

    def attack(self, victim, cell, victim_dir, misinformation_dir=None):
        from divqat.blackbox import BlackBox
        from divqat.defenses.cost import defense_cost
        from divqat.metrics import evaluate_surrogate

        fn, kwargs = self.attack_call(cell.attack, cache_dir=str(Path(victim_dir) / "transfer"))
        defense = self.build_defense(cell, victim_dir, misinformation_dir)
        budget = cell.attack.kwargs["budget"]
        # the API publishes the victim's architecture (docs/science.md §1); ids key the transfer cache
        identity = dict(arch=self.config.victim["arch"], victim_id=cell.victim.key,
                        defense_id=cell.defense.label if defense else None)
        blackbox = BlackBox(victim, defense=defense, budget=budget, **identity)
        surrogate, record = fn(blackbox, budget=budget, seed=cell.victim.seed, **kwargs)
        scoring = self.scoring_set(cell.attack)
        metrics = evaluate_surrogate(surrogate, BlackBox(victim, defense=defense, **identity), scoring)
        metrics["queries_used"] = record["queries_used"]  # answers the surrogate was trained on
        metrics["fresh_queries"] = blackbox.queries_used  # of which not served by the transfer cache
        if scoring is not self.test_set:
            metrics["scoring_images"] = len(scoring)
        if "answered_hist" in record:  # argmax of every answer the thief received, per class
            metrics["answered_hist"] = record["answered_hist"]
        if defense is not None:
            cost = defense_cost(victim, defense, self.test_set, progress=False)
            metrics.update(defense_l1=cost["mean_l1"], defense_kl=cost["mean_kl"],
                           defense_latency_per_query_s=cost["latency_per_query_s"])
        if self.config.robustness:
            metrics.update(self.robustness(surrogate, prefix="surrogate_robust"))
        return metrics
